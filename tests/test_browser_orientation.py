"""The image Gemini is sent is the image the App's browser shows.

The App draws a sample with an ``<img>`` element, so labels relative to the
image sent to Gemini land right only if that image is what the browser shows:
EXIF orientation applied where the browser applies it. Chromium loads each
test image as the App would, and reports its displayed size and the colour of
its top-left corner, which must match the prepared image.
"""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess

import numpy as np
import pytest
from PIL import Image

from gemini_annotate.media import prepare_image


pytestmark = pytest.mark.browser

PAGE = """<html><body><pre id="out">pending</pre><script>
const images = %s, out = {};
let left = Object.keys(images).length;
for (const [name, url] of Object.entries(images)) {
  const img = new Image();
  img.onload = () => {
    const canvas = document.createElement("canvas");
    canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
    const ctx = canvas.getContext("2d"); ctx.drawImage(img, 0, 0);
    out[name] = [img.naturalWidth, img.naturalHeight, Array.from(ctx.getImageData(4, 4, 1, 1).data.slice(0, 3))];
    if (--left === 0) document.getElementById("out").textContent = JSON.stringify(out);
  };
  img.onerror = () => { out[name] = null; if (--left === 0) document.getElementById("out").textContent = JSON.stringify(out); };
  img.src = url;
}
</script></body></html>"""


def quadrants() -> Image.Image:
    a = np.zeros((40, 64, 3), np.uint8)
    a[:20, :32], a[:20, 32:], a[20:, :32], a[20:, 32:] = (0, 200, 0), (200, 0, 0), (0, 0, 200), (200, 200, 200)
    return Image.fromarray(a)


def test_chromium_shows_each_file_as_it_is_prepared_for_gemini(tmp_path, chromium):
    images, prepared = {}, {}
    mimes = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
    for fmt in mimes:
        for orientation in range(1, 9):
            path = tmp_path / f"o{orientation}.{fmt.lower()}"
            exif = Image.Exif()
            exif[0x0112] = orientation
            quadrants().save(path, fmt, exif=exif, **({"quality": 95} if fmt == "JPEG" else {}))
            name = path.name
            images[name] = f"data:{mimes[fmt]};base64," + base64.b64encode(path.read_bytes()).decode()
            prepared[name] = prepare_image(str(path), max_side=1536)
    page = tmp_path / "page.html"
    page.write_text(PAGE % json.dumps(images))

    dom = subprocess.run([chromium.executable, *chromium.args, "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    shown = json.loads(re.search(r'<pre id="out">(.*?)</pre>', dom, re.DOTALL).group(1))

    for name, image in prepared.items():
        width, height, corner = shown[name]
        sent = Image.open(io.BytesIO(image.data)).convert("RGB")
        assert (width, height) == (image.display_width, image.display_height) == sent.size, name
        assert np.abs(np.subtract(sent.getpixel((4, 4)), corner)).max() < 24, name
