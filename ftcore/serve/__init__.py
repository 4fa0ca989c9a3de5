"""Serving a trained run over HTTP in text-embeddings-inference's shapes (``scripts/serve.py``).

``protocol`` (request parsing, answers, TEI's errors) -> ``engine`` (the run: encode, score, answer) ->
``batcher`` (one queue, one worker that owns the model) -> ``server`` (routes, limits, shutdown);
``stats`` holds what ``GET /metrics`` reports.
"""
