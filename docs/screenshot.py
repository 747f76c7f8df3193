"""Render the report `tether report` wrote (the main job's sandbox/report.html) to a PNG for
docs/workflows.md, without a browser: WeasyPrint lays the HTML and its inline SVG out as a PDF, pypdfium2
rasterises the first page. Neither is a dependency of tether; run it from a scratch venv:

    python3 -m venv /tmp/shot && /tmp/shot/bin/pip install weasyprint pypdfium2
    /tmp/shot/bin/python docs/screenshot.py sandbox/report.html docs/report.png
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path


def main(html: str, png: str) -> None:
    import pypdfium2
    import weasyprint

    with tempfile.TemporaryDirectory() as tmp:
        pdf = Path(tmp) / "report.pdf"
        weasyprint.HTML(filename=html).write_pdf(pdf)
        page = pypdfium2.PdfDocument(str(pdf))[0]
        page.render(scale=1.6).to_pil().save(png)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
