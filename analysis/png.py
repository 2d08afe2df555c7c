"""PNG images of plotly figures through a headless Chromium, when one is installed.

Kaleido (plotly's exporter) is not a dependency: the browser that renders the dashboard also
renders the images. One page holds plotly.js and every figure; in it `Plotly.toImage` turns
each figure into a PNG data URL written into the page, and `chromium --headless --dump-dom`
returns the page with them, so N figures cost one browser start. Without a browser (or when it
fails) no PNG is written and the reason comes back; the HTML dashboard does not need them.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
BROWSER_ENV = "INFOAE_BROWSER"  # a browser binary to use instead of the first on PATH
WIDTH, HEIGHT = 1100, 600
TIMEOUT_S = 120.0


def find_browser() -> str | None:
    """`$INFOAE_BROWSER`, else the first Chromium-like browser on PATH."""
    named = os.environ.get(BROWSER_ENV)
    if named:
        return shutil.which(named) or (named if Path(named).is_file() else None)
    return next((found for b in BROWSERS if (found := shutil.which(b))), None)


def headless(browser: str, page: Path, *options: str) -> list[str]:
    """The command that loads `page` in a headless browser (no sandbox: root in containers;
    a virtual-time budget: the page's scripts finish before the DOM is taken)."""
    return [
        browser,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--enable-unsafe-swiftshader",  # software WebGL: parallel coordinates draw with it
        "--virtual-time-budget=20000",
        *options,
        page.resolve().as_uri(),
    ]


def write_pngs(figures: dict[str, go.Figure], folder: Path, prefix: str) -> list[Path] | str:
    """`<folder>/<prefix>.<name>.png` for each figure; the paths, or why there are none."""
    browser = find_browser()
    if browser is None:
        return f"no PNG: no browser found (tried {', '.join(BROWSERS)} and ${BROWSER_ENV})"
    with tempfile.TemporaryDirectory() as scratch:
        page = Path(scratch) / "figures.html"
        page.write_text(_page(figures))
        try:
            done = subprocess.run(
                headless(browser, page, "--dump-dom"),
                capture_output=True,
                text=True,
                timeout=TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"no PNG: {browser} failed ({error})"
    images = dict(
        re.findall(r'<pre id="png-([\w-]+)">data:image/png;base64,([^<]+)</pre>', done.stdout)
    )
    paths = []
    for name in figures:
        if name in images:
            path = Path(folder) / f"{prefix}.{name}.png"
            path.write_bytes(base64.b64decode(images[name]))
            paths.append(path)
    return paths or f"no PNG: {browser} rendered none (exit {done.returncode})"


def _page(figures: dict[str, go.Figure]) -> str:
    specs = {name: json.loads(figure.to_json()) for name, figure in figures.items()}
    script = f"""
const specs = {json.dumps(specs)};
(async () => {{
  for (const [name, spec] of Object.entries(specs)) {{
    const out = document.createElement("pre");
    out.id = "png-" + name;
    try {{
      const div = document.createElement("div");
      document.body.appendChild(div);
      await Plotly.newPlot(div, spec.data, spec.layout || {{}});
      const size = {{format: "png", width: {WIDTH}, height: {HEIGHT}}};
      out.textContent = await Plotly.toImage(div, size);
    }} catch (error) {{
      out.textContent = "error: " + error;
    }}
    document.body.appendChild(out);
  }}
}})();
"""
    return (
        "<!doctype html><html><head><meta charset='utf-8'></head><body>"
        f"<script>{get_plotlyjs()}</script><script>{script}</script></body></html>"
    )
