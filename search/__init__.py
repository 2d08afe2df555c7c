"""Training, data and search for the Information-Autoencoding family."""
