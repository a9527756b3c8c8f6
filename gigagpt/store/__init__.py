"""The run store: the only code that reads or writes a run directory (docs/run-format.md).

No torch here: the dashboard and `gigagpt runs` use it, and so do the trainers.

- files:    atomic writes, appended JSON lines, RunError
- layout:   runs roots, run ids, finding and recognising run directories, checkpoint names
- lock:     a trainer's ownership of its run directory; running or crashed
- meta:     meta.json as a checked record
- writer:   a trainer's side: open the run, keep meta.json fresh, append metrics, finish
- checkpoints: which checkpoints a trainer keeps, and which one a resume starts from
- failed:   a run file that could not be written (a full disk): one line naming it
- metrics:  the one metrics.jsonl reader: checked records, resume roll-backs
- scan:     the incremental metrics scan behind a summary
- curves:   compare's fast column reader
- summary:  a run's row in a listing, and the per-root summary cache
- actions:  rename, tag, delete, stop
- export:   CSV and TensorBoard
"""
