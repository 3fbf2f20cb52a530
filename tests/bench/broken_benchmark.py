"""A benchmark whose run() fails, for the runner's tests."""


def run() -> dict:
    raise RuntimeError("the benchmark's service did not start")
