"""The runs screen's footer at 80 columns (every key it shows, whole), and the order of the launch
screen's recent runs (queued ones in queue order, first to start first; then the others, newest
first). Read off the screen as drawn."""
from test_dash_app import run
from test_dash_browse import browser, open_browser, synthetic_run
from test_dash_small import recent_runs, screen_lines, shown
from textual.widgets import Footer

from app.main import DashApp


def test_runs_screen_footer_keys_fit_80_columns(tmp_path):
    synthetic_run(tmp_path / "runs", "done")

    async def go():
        app = browser(tmp_path / "runs")
        async with app.run_test(size=(80, 24)) as pilot:
            runs = await open_browser(app, pilot)
            await pilot.pause()
            footer = screen_lines(app)[runs.query_one(Footer).region.y]
            keys = [b.binding for b in runs.active_bindings.values() if b.binding.show and b.enabled]
            assert len(keys) >= 5, keys  # the most used ones stay in the footer
            for binding in keys:
                assert f" {app.get_key_display(binding)} {binding.description} " in footer, (binding, footer)
            for key, what in (("space", "Select"), ("c", "Compare"), ("w", "Sweep"), ("?", "Help")):
                assert f" {key} {what} " in footer, footer
    run(go())


def test_recent_runs_queued_first_in_queue_order_then_newest_first(tmp_path):
    """Two runs queued, the later-made one second in the queue; a completed run made after them
    and one made before: queued #1, queued #2, then the completed ones newest first."""
    root = tmp_path / "runs"
    synthetic_run(root, "old-done", created=1_700_000_000)
    synthetic_run(root, "first-queued", created=1_700_000_100, status="queued", step=0, queue_order=1.0)
    synthetic_run(root, "second-queued", created=1_700_000_200, status="queued", step=0, queue_order=2.0)
    synthetic_run(root, "new-done", created=1_700_000_300)

    async def go():
        app = DashApp(root, probe=False, refresh=0.2)
        async with app.run_test(size=(80, 24)) as pilot:
            runs = await recent_runs(app, pilot, 4)
            lines = [line for line in shown(app, runs)[1:] if line.strip()]
            assert [line.split()[0] for line in lines] == ["first-queued", "second-queued", "new-done", "old-done"]
            assert "queued #1" in lines[0] and "queued #2" in lines[1], lines
    run(go())
