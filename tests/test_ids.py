"""appliance.ids: 128-bit ids from a pooled CSPRNG read, unique across threads and
never repeated by a forked child."""

import os
import re
import threading

from appliance import ids


def test_ids_are_hex_and_unique_across_threads_and_pool_refills():
    got: list[str] = []

    def take():
        got.extend(ids.new_id() for _ in range(1000))

    workers = [threading.Thread(target=take) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(got) == 4000 > ids.POOL // 16  # the pool was refilled many times
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in got)
    assert len(set(got)) == 4000


def test_a_forked_child_draws_its_own_ids():
    ids.new_id()  # the parent holds a pool
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, to the parent
        os.write(write, ids.new_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    os.close(write)
    parent = [ids.new_id() for _ in range(ids.POOL // 16)]  # the rest of the parent's pool
    assert re.fullmatch(r"[0-9a-f]{32}", child)
    assert child not in parent
