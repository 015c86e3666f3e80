"""Side-by-side benchmark of Task Engine and other Python task queues on one Redis server.

Run from the repository root with `make bench-peers` (or
`bench/.peers-venv/bin/python -m bench.peers.run`). The peers live only in bench/.peers-venv;
Task Engine runs from the project's .venv. See docs/BENCHMARKS.md.
"""
