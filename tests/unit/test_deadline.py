import time

from syncd.apply.deadline import Deadline


def test_cancels_what_outlives_the_deadline_and_nothing_that_ends_in_time() -> None:
    cancelled: list[str] = []
    deadline = Deadline(0.1, cancelled.append, "test")
    with deadline.armed("quick"):
        time.sleep(0.01)
    with deadline.armed("slow"):
        time.sleep(0.3)
    with deadline.armed("quick again"):
        pass
    time.sleep(0.2)
    deadline.close()
    assert cancelled == ["slow"]
