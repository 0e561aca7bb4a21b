"""The apps benchmarks/bench_peers.py runs the same no-op task on: Celery, Dramatiq, ringleader.

Each worker process is configured from the environment the benchmark sets for it:

  BENCH_PEERS_REDIS   Redis URL: Celery's and Dramatiq's broker and result backend, and where
                      every system's task body records its completion (`marks`)
  BENCH_PEERS_PREFIX  key prefix of one trial of one system (its queues, results and marks)

ringleader's workers read RINGLEADER_* as usual (their Kafka, Redis and namespace).
"""
