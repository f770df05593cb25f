"""The documentation: the site builds (tutorials executed, every figure drawn by rdex) and works in a
real headless browser; the README's Python runs; docstring examples run."""

from __future__ import annotations

import doctest
import functools
import http.server
import importlib
import os
import pkgutil
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import rdex
from browser import headless_chromium, missing  # tests/ is on sys.path (conftest)

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = sorted(p.stem for p in (ROOT / "docs" / "tutorials").glob("*.py"))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`mkdocs build --strict` of this checkout, as `make docs` runs it (tutorials executed)."""
    try:
        import mkdocs  # noqa: F401
        import mkdocs_jupyter  # noqa: F401
    except ImportError:
        missing('the docs extra is not installed (pip install -e ".[docs]")')
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ)
    # The tutorials' kernel and the figure hook import the rdex under test.
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(rdex.__file__).parents[1]), *filter(None, [env.get("PYTHONPATH")])]
    )
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    return out


def test_site_builds_with_executed_tutorials_and_drawn_figures(site: Path) -> None:
    for name in TUTORIALS:
        page = (site / "tutorials" / name / "index.html").read_text()
        # Executed: the notebook's outputs (figures as inline PNGs, printed text) are on the page.
        assert len(re.findall(r'<img[^>]+src="data:image/png;base64,', page)) >= 1, name
        assert "Traceback" not in page, name
    figures = site / "figures" / "generated"
    drawn = sorted(p.name for p in figures.glob("*.png"))
    assert {"demo.png", "polar.png", "baselines.png", "quality-128.png"} <= set(drawn)
    # Every figure a page refers to exists in the site (strict mode checks Markdown links too).
    for html in site.rglob("*.html"):
        for src in re.findall(r'<img[^>]+src="([^"]+)"', html.read_text()):
            if not src.startswith(("data:", "http")):
                assert (html.parent / src).resolve().is_file(), (html, src)
    api = (site / "api" / "rdex" / "index.html").read_text()
    for name in rdex.__all__:
        if name != "__version__" and not name.startswith(("load_", "sample_")):
            assert f'id="rdex.{name}"' in api, name


@pytest.fixture(scope="module")
def server(site: Path) -> Iterator[str]:
    """The built site over HTTP on localhost (the search index is fetched, not read from file:)."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.browser
def test_site_in_headless_chromium(server: str) -> None:
    with headless_chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        failed: list[str] = []
        page.on("pageerror", lambda e: failed.append(str(e)))
        page.on(
            "requestfailed",
            lambda r: failed.append(r.url) if r.url.startswith(server) else None,
        )

        def pictures() -> list[int]:
            page.wait_for_load_state("load")
            return page.eval_on_selector_all(
                "article img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)"
            )

        # The home page with its figure, drawn by `rdex demo` during the build.
        page.goto(f"{server}/")
        assert "rdex" in page.title()
        widths = pictures()
        assert widths and all(w > 100 for w in widths), widths

        # A tutorial renders with the figures its code drew.
        page.goto(f"{server}/tutorials/quickstart/")
        widths = pictures()
        assert len(widths) >= 2 and all(w > 100 for w in widths), widths
        assert page.locator("text=explained label: Egyptian cat").count() >= 1

        # The search box finds CartoonX.
        from playwright.sync_api import TimeoutError as PageTimeout

        page.goto(f"{server}/")
        results = page.locator(".md-search-result__item")
        # The search worker builds its index in the page first: on a loaded CPU a query typed
        # before it is ready shows nothing, so the query is typed again until the index answers.
        for _ in range(24):
            page.fill("input.md-search__input", "")
            page.fill("input.md-search__input", "CartoonX")
            try:
                results.first.wait_for(timeout=5_000)
                break
            except PageTimeout:
                continue
        results.first.wait_for(timeout=5_000)
        assert results.count() >= 3
        assert "CartoonX" in page.inner_text(".md-search-result")

        # The API page of rdex.CartoonX exists and documents it.
        page.goto(f"{server}/api/rdex/#rdex.CartoonX")
        heading = page.locator('[id="rdex.CartoonX"]')
        assert heading.count() == 1
        assert "CartoonX" in heading.inner_text()
        assert "Algorithm 1" in page.inner_text("article")
        assert failed == []


def _readme_python() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_readme_python_runs() -> None:
    blocks = _readme_python()
    assert len(blocks) >= 2
    namespace: dict[str, object] = {"__name__": "readme"}
    for block in blocks:  # in order, in one namespace, as a reader runs them
        exec(compile(block, "README.md", "exec"), namespace)
    result = namespace["result"]
    assert isinstance(result, rdex.RDEResult) and result.explanation.shape == (1, 1, 128, 128)


def _modules_with_examples() -> list[str]:
    names = ["rdex"] + [
        m.name for m in pkgutil.walk_packages(rdex.__path__, "rdex.") if ".cli" not in m.name
    ]
    out = []
    for name in names:
        spec = importlib.util.find_spec(name)
        if spec and spec.origin and ">>>" in Path(spec.origin).read_text():
            out.append(name)
    return out


@pytest.mark.parametrize("module", _modules_with_examples())
def test_docstring_examples(module: str) -> None:
    result = doctest.testmod(
        importlib.import_module(module),
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
        verbose=False,
    )
    assert result.attempted > 0 and result.failed == 0, result


def test_docstring_examples_cover_the_main_api() -> None:
    assert {"rdex.rde", "rdex.methods.cartoonx", "rdex.methods.pixel_rde"} <= set(
        _modules_with_examples()
    )


def test_rdex_figures_keep_a_notebooks_inline_backend() -> None:
    # rdex.viz picks Agg on headless machines, but must not replace the backend a Jupyter kernel
    # chose: the tutorials' figures would vanish from the notebook.
    code = (
        "import matplotlib; matplotlib.use('module://matplotlib_inline.backend_inline'); "
        "from rdex.viz import _pyplot; _pyplot(); print(matplotlib.get_backend())"
    )
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(rdex.__file__).parents[1]), *filter(None, [env.get("PYTHONPATH")])]
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "module://matplotlib_inline.backend_inline"


def test_version_is_written_once() -> None:
    from importlib.metadata import version

    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^dynamic = \["version"\]', pyproject, flags=re.M)
    assert not re.search(r'^version = "', pyproject, flags=re.M)
    assert version("rdex") == rdex.__version__
