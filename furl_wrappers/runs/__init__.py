"""The run machinery around FuRL: ``furl train`` / ``evaluate`` / ``report`` / ``sweep`` and the rl-zoo launcher.

The FuRL core (envs and frames, encoders, the VLM reward, buffers, alignment, relay and backbones) lives at the top
of :mod:`furl_wrappers` and never imports this package; this package builds runs from it:

- :mod:`~furl_wrappers.runs.zoo_config` reads the rl-zoo-style YAML configs (:mod:`~furl_wrappers.runs.safe_eval`
  parses their Python-expression strings); :mod:`~furl_wrappers.runs.zoo_launcher` and
  :mod:`~furl_wrappers.runs.zoo_safety` hand over to rl-zoo;
- :mod:`~furl_wrappers.runs.training` runs one ``furl train`` in a :mod:`~furl_wrappers.runs.run_dir` held by a
  :mod:`~furl_wrappers.runs.run_lock`, checkpointed as a :mod:`~furl_wrappers.runs.checkpoint_set` (model zip +
  :mod:`~furl_wrappers.runs.buffer_file` + meta) by :mod:`~furl_wrappers.runs.checkpoint_callback`, evaluated with
  the paper's :mod:`~furl_wrappers.runs.protocol` by :mod:`~furl_wrappers.runs.evaluation`, timed by one
  :mod:`~furl_wrappers.runs.run_clock` across resumes, shown by :mod:`~furl_wrappers.runs.progress`;
- :mod:`~furl_wrappers.runs.sweep` runs grids of them; :mod:`~furl_wrappers.runs.report` tabulates and plots them.
"""
