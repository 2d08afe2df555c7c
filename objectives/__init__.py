"""The Information-Autoencoding family as algebra (terms, compiler, presets) and torch losses."""
