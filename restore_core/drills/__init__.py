"""Restore drills (issue 15): scheduled restores into a server reserved for drills that prove the backups work, with
RTO/RPO evidence and automatic clean-up. See docs/drills.md.

- :mod:`.ncrontab` — the schedule expressions (NCRONTAB, UTC), parsed without extra packages;
- :mod:`.model` — the drill definition, validated strictly;
- :mod:`.store` — definitions and runs in the state table's meta rows;
- :mod:`.scheduler` — the timer: due runs, spread over the start window, started as ordinary restores;
- :mod:`.evidence` — the immutable evidence document of a run (pipeline.finish hook);
- :mod:`.completion` — the run's ``drill.run.finished`` event and ``drill finished`` log record, once per run;
- :mod:`.cleanup` — drops only the databases carrying the run's own restore mark;
- :mod:`.latest` — the last run per drill and backup instance, with its RTO trend (the dashboard's drills panel);
- :mod:`.api` — ``/api/drills`` handlers.
"""
