"""Stand-in for Forge's modules_forge/main_thread.py: tasks queued with async_run run one by
one in loop(), which Forge's webui.py runs on the process's main thread; here a thread named
"MainThread (Forge)" runs it. As in Forge, a task's exception is printed and its result is
None."""

import threading
import traceback

lock = threading.Lock()
last_id = 0
waiting_list = []
finished_list = []
last_exception = None
_wake = threading.Condition()


class Task:
    def __init__(self, task_id, func, args, kwargs):
        self.task_id, self.func, self.args, self.kwargs = task_id, func, args, kwargs
        self.result = self.exception = None

    def work(self):
        global last_exception
        try:
            self.result = self.func(*self.args, **self.kwargs)
            self.exception = last_exception = None
        except Exception as e:
            traceback.print_exc()
            self.exception = last_exception = e


def loop():
    while True:
        with _wake:
            _wake.wait_for(lambda: waiting_list)  # Forge polls every 10 ms instead
        with lock:
            task = waiting_list.pop(0)
        task.work()
        with _wake:
            finished_list.append(task)
            _wake.notify_all()


def async_run(func, *args, **kwargs):
    global last_id
    with lock, _wake:
        last_id += 1
        waiting_list.append(Task(last_id, func, args, kwargs))
        _wake.notify_all()
        return last_id


def run_and_wait_result(func, *args, **kwargs):
    current_id = async_run(func, *args, **kwargs)
    with _wake:
        _wake.wait_for(lambda: any(t.task_id == current_id for t in finished_list))
        task = next(t for t in finished_list if t.task_id == current_id)
        finished_list.remove(task)
    return task.result


threading.Thread(target=loop, name="MainThread (Forge)", daemon=True).start()
