"""The HTML report of a batch run: content, escaping, and the page in a real (headless) browser."""

from __future__ import annotations

import contextlib
import html
import json
import statistics
from pathlib import Path

import markupsafe
import pytest

from browser import headless_chromium
from rdex.batch import latest_records, read_manifest, run_batch
from rdex.rde import preset
from rdex.report import collect_cards, render_report, write_report
from tiny_models import colour_classifier, make_image  # tests/ is on sys.path (conftest)

SIZE = 32
WEIRD = 'we<i>rd & "odd".png'


@pytest.fixture(scope="module")
def batch_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-method batch run over an ImageFolder tree: 2 misclassified, 1 broken, 1 odd name."""
    root = tmp_path_factory.mktemp("report")
    tree = root / "tree"
    layout = {
        "red/a.png": "red",
        "red/b.png": "green",  # misclassified
        "green/c.png": "green",
        f"green/{WEIRD}": "green",
        "blue/d.png": "blue",
        "blue/e.png": "red",  # misclassified
    }
    for i, (name, colour) in enumerate(layout.items()):
        make_image(tree / name, colour, size=SIZE, seed=i)
    (tree / "blue" / "broken.png").write_bytes(b"not a png")
    out = root / "out"
    summary = run_batch(
        tree,
        out,
        model=colour_classifier(),
        methods=["cartoonx", "pixel-rde"],
        configs=preset("preview", steps=2, samples=2),
        size=SIZE,
        batch_size=4,
        progress=False,
    )
    assert (summary.explained, summary.failed) == (12, 2)
    write_report(out)
    return out


@pytest.fixture(scope="module")
def seeded_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A batch run with ``seeds=[0, 1]`` over three images, and one image without seeds."""
    root = tmp_path_factory.mktemp("seeded")
    for i, colour in enumerate(("red", "green", "blue")):
        make_image(root / "in" / f"{'abc'[i]}-{colour}.png", colour, size=SIZE, seed=i)
    kwargs = dict(
        model=colour_classifier(),
        methods=["cartoonx"],
        configs=preset("preview", steps=6, samples=2),
        size=SIZE,
        progress=False,
    )
    assert run_batch(root / "in", root / "out", seeds=[0, 1], **kwargs).ok
    make_image(root / "more" / "plain.png", "red", size=SIZE, seed=9)
    assert run_batch(root / "more", root / "out", **kwargs).ok
    write_report(root / "out")
    return root / "out"


def test_cards_follow_the_manifest(batch_out: Path) -> None:
    records = read_manifest(batch_out)
    cards = collect_cards(records)
    assert [c.name for c in cards] == list(dict.fromkeys(r["name"] for r in records))
    by_name = {c.name: c for c in cards}
    assert {n for n, c in by_name.items() if c.misclassified} == {"red/b.png", "blue/e.png"}
    assert by_name["blue/broken.png"].status == "error"
    assert by_name["red/b.png"].classes == ["green", "red"]
    assert [r["method"] for r in by_name["red/a.png"].records] == ["cartoonx", "pixel-rde"]

    # A later record of the same image and method replaces the earlier one.
    newer = dict(latest_records(records)[0], final_distortion=123.0)
    card = {c.name: c for c in collect_cards([*records, newer])}[newer["name"]]
    assert [r["final_distortion"] for r in card.records if r["method"] == newer["method"]] == [
        123.0
    ]


def test_page_content_and_escaping(batch_out: Path) -> None:
    page = (batch_out / "index.html").read_text()
    assert page == render_report(batch_out)
    assert page.count("<article ") == 7
    assert page.count('data-misclassified="1"') == 2
    assert page.count('data-status="error"') == 1
    assert page.count('class="pred wrong"') == 2 and page.count('class="pred right"') == 4
    # Every picture is referenced relatively and exists.
    srcs = [s.split('"')[0] for s in page.split('src="')[1:]]
    assert len(srcs) == 6 * 3
    for src in srcs:
        assert not src.startswith(("/", "file:", "http"))
        assert (batch_out / html.unescape(src)).is_file()
    # The odd file name is shown escaped, never as markup.
    assert "we<i>rd" not in page
    assert str(markupsafe.escape(f"green/{WEIRD}")) in page
    assert "not a readable image" in page
    assert "<script>" in page and page.count("<script>") == 1

    with pytest.raises(FileNotFoundError, match="manifest"):
        render_report(batch_out / "explanations")


def test_report_cli(batch_out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from rdex.cli import main

    (batch_out / "index.html").unlink()
    try:
        assert main(["report", str(batch_out), "--title", "My run"]) == 0
        assert "<title>My run</title>" in (batch_out / "index.html").read_text()
        assert capsys.readouterr().out.strip().endswith("index.html")
        assert main(["report", str(batch_out / "nope")]) == 2
    finally:
        write_report(batch_out)


def test_seed_agreement_on_the_cards(seeded_out: Path, batch_out: Path) -> None:
    records = read_manifest(seeded_out)
    lows = {r["name"]: r["seeds"]["ssim_min"] for r in records if r.get("seeds")}
    assert sorted(lows) == ["a-red.png", "b-green.png", "c-blue.png"]
    page = (seeded_out / "index.html").read_text()
    for low in lows.values():  # two seeds: one pair, one value
        assert f"seeds 0,1: SSIM {low:.2f}<" in page
        assert f'data-seed-ssim="{low:.4f}"' in page
    assert page.count('data-seed-ssim=""') == 1  # the image explained with one seed
    assert f"min {min(lows.values()):.2f}, median {statistics.median(lows.values()):.2f}" in page
    assert 'id="order"' in page
    assert 'id="order"' not in (batch_out / "index.html").read_text()  # no seeds, no ordering

    # A tampered summary of seeds is skipped, never shown.
    bad = dict(records[0], seeds={"seeds": [0, 1], "ssim_min": "<b>0.1</b>", "ssim_mean": 1})
    with open(seeded_out / "manifest.jsonl", "a") as fh:
        fh.write(json.dumps(bad) + "\n")
    logged: list[str] = []
    try:
        tampered = render_report(seeded_out, log=logged.append)
    finally:
        lines = (seeded_out / "manifest.jsonl").read_text().splitlines()
        (seeded_out / "manifest.jsonl").write_text("\n".join(lines[:-1]) + "\n")
    assert logged == [f"skipped a manifest record ({records[0]['name']!r}): seeds is not a "
                      "summary of seeds"]  # fmt: skip
    assert "<b>0.1</b>" not in tampered and "&lt;b&gt;" not in tampered


@pytest.mark.browser
def test_seed_ordering_in_headless_chromium(seeded_out: Path) -> None:
    records = [r for r in read_manifest(seeded_out) if r.get("seeds")]
    lowest_first = [r["name"] for r in sorted(records, key=lambda r: r["seeds"]["ssim_min"])]
    manifest_order = [r["name"] for r in read_manifest(seeded_out)]
    assert lowest_first != manifest_order[:3]  # else the ordering would not show
    with headless_chromium() as browser:
        page = browser.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto((seeded_out / "index.html").resolve().as_uri())
        page.wait_for_load_state("load")

        def order() -> list[str]:
            return page.eval_on_selector_all(".card", "cs => cs.map(c => c.dataset.name)")

        assert order() == manifest_order
        page.select_option("#order", "seeds")
        assert order() == [*lowest_first, "plain.png"]  # without seeds: last
        page.check("#only-misclassified")  # filters still apply to the reordered cards
        assert page.text_content("#count") == "0 of 4 images shown"
        page.uncheck("#only-misclassified")
        page.select_option("#order", "")
        assert order() == manifest_order
        assert problems == []


@pytest.mark.browser
def test_report_in_headless_chromium(batch_out: Path) -> None:
    expected_names = list(dict.fromkeys(r["name"] for r in read_manifest(batch_out)))
    with headless_chromium() as browser:
        page = browser.new_page()
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("requestfailed", lambda r: problems.append(f"failed: {r.url}"))
        page.goto((batch_out / "index.html").resolve().as_uri())
        page.wait_for_load_state("load")

        def visible() -> list[str]:
            return page.eval_on_selector_all(
                ".card",
                "cs => cs.filter(c => !c.hidden && c.offsetParent !== null).map(c => c.dataset.name)",
            )

        assert page.locator(".card").count() == len(expected_names)
        assert visible() == expected_names
        # Every picture decoded (a broken relative path would give naturalWidth 0). The pictures
        # load lazily: bring each into view (cards with warnings are tall, the last ones start
        # below the first screen). Decoding may finish after that on a busy machine: wait for it
        # (a broken path never does, and the assertion below then names it).
        page.eval_on_selector_all("img", "imgs => imgs.forEach(i => i.scrollIntoView())")
        with contextlib.suppress(Exception):  # the assertion below says what is missing
            page.wait_for_function(
                "Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)",
                timeout=20_000,
            )
        widths = page.eval_on_selector_all(
            "img", "imgs => imgs.map(i => i.complete && i.naturalWidth)"
        )
        assert len(widths) == 18 and all(w == SIZE for w in widths), str(widths)
        assert page.text_content("#count") == "7 of 7 images shown"

        page.check("#only-misclassified")
        assert sorted(visible()) == ["blue/e.png", "red/b.png"]
        page.select_option("#class-filter", "green")  # true or predicted class green
        assert visible() == ["red/b.png"]
        page.uncheck("#only-misclassified")
        assert sorted(visible()) == sorted(["green/c.png", f"green/{WEIRD}", "red/b.png"])
        page.select_option("#class-filter", "")
        page.check("#only-errors")
        assert visible() == ["blue/broken.png"]
        assert page.text_content("#count") == "1 of 7 images shown"

        wrong = page.eval_on_selector(
            '.card[data-name="red/b.png"] .pred', "e => getComputedStyle(e).color"
        )
        assert wrong == "rgb(198, 40, 40)"  # red for a misclassification
        assert problems == []


def test_manifest_lines_are_plain_json(batch_out: Path) -> None:
    lines = (batch_out / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == 14
    assert all(isinstance(json.loads(line), dict) for line in lines)
