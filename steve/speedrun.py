"""The concurrent (speedrun) layout: the world-model learner trains in its own process while the
main process acts and trains the value function, as in the reference's separate learner
processes. Transitions go to the world-model process in chunks through a queue (it keeps its own
replay, like the reference's learners); the newest world-model weights come back through
another queue every `publish_every` updates. Not reproducible run to run: the two learners race.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import queue
import time

import numpy as np

from common.buffers import ReplayBuffer
from common.device import set_single_thread


def world_model_worker(cfg: dict, seed: int, obs_dim: int, action_dim: int, data_q, model_q, stop,
                       publish_every: int, log_path: str) -> None:
    """Train the world model on whatever data has arrived, as fast as it can, until `stop`."""
    from steve.train import make_world_model  # the same construction as the one-process mode

    set_single_thread()
    learner = make_world_model(cfg, obs_dim, action_dim, seed)
    model_cfg = cfg["model_config"]
    replay = ReplayBuffer(model_cfg["replay_size"], (obs_dim,), (action_dim,), seed=seed)
    with open(log_path, "a") as log:
        while not stop.is_set():
            try:
                while True:
                    replay.add_batch(*data_q.get_nowait())
            except queue.Empty:
                pass
            if len(replay) < model_cfg["batch_size"]:
                time.sleep(0.01)
                continue
            info = learner.update(tuple(replay.sample(model_cfg["batch_size"])[:5]))
            if learner.updates % publish_every == 0:
                try:
                    model_q.put_nowait({k: v.clone() for k, v in learner.model.state_dict().items()})
                except queue.Full:  # the value learner has not taken the last one yet
                    pass
            if learner.updates % model_cfg["log_every_n"] == 0:
                log.write(json.dumps({"updates": learner.updates, "replay": len(replay), **info}) + "\n")
                log.flush()


class WorldModelProcess:
    """The main process's handle: send transitions, fetch the newest weights, stop."""

    def __init__(self, cfg: dict, seed: int, obs_dim: int, action_dim: int, log_path, publish_every: int = 100,
                 chunk: int = 50):
        ctx = mp.get_context("spawn")
        self.data_q, self.model_q, self.stop_event = ctx.Queue(), ctx.Queue(maxsize=2), ctx.Event()
        self.pending: list[tuple] = []
        self.chunk = chunk
        self.process = ctx.Process(target=world_model_worker, daemon=True,
                                   args=(cfg, seed, obs_dim, action_dim, self.data_q, self.model_q,
                                         self.stop_event, publish_every, str(log_path)))
        self.process.start()

    def send(self, transition: tuple) -> None:
        self.pending.append(transition)
        if len(self.pending) >= self.chunk:
            columns = [np.asarray(column) for column in zip(*self.pending)]
            self.data_q.put(columns)
            self.pending = []

    def newest(self):
        """The newest published weights, or None when nothing new arrived."""
        state = None
        try:
            while True:
                state = self.model_q.get_nowait()
        except queue.Empty:
            return state

    def close(self) -> None:
        self.stop_event.set()
        self.process.join(timeout=30)
        if self.process.is_alive():
            self.process.terminate()
