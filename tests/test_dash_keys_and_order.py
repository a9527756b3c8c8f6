"""The runs screen's footer at 80 columns (every key it shows, whole). Read off the screen as drawn."""
from test_dash_app import run
from test_dash_browse import browser, open_browser, synthetic_run
from test_dash_small import screen_lines
from textual.widgets import Footer


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

