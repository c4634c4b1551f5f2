"""Progress: log lines when headless, and in a notebook a bar that a saved notebook shows finished."""
import nbclient
import nbformat

from distill_lib.core.progress import Progress


def test_log_mode_prints_the_final_state(capsys):
    with Progress(3, "demo", mode="log") as bar:
        for _ in range(3):
            bar.update(1, loss=0.25)
    assert capsys.readouterr().out.strip().startswith("demo: 3/3 loss=0.25")


def test_a_notebook_bar_is_saved_as_its_final_line_not_a_frozen_widget():
    code = ("from distill_lib.viz.notebook import NotebookBar\n"
            "from distill_lib.core.progress import Progress, set_progress\n"
            "set_progress('bar', bar=NotebookBar)\n"
            "with Progress(40, 'demo') as bar:\n"
            "    for _ in range(40):\n"
            "        bar.update(1, loss=0.5)\n")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)], metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3").execute()
    outputs = notebook.cells[0].outputs
    assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)
    assert [o["data"]["text/plain"].split(" (")[0] for o in outputs] == ["demo: 40/40 loss=0.5"]
