"""The speedrun layout (the reference's separate learner processes with frames_per_update false):
the world-model learner and the value learner each train in their own process, as fast as they
can, on their own replay memories (the reference's learners keep one each); the main process
acts and evaluates. Transitions go to both learners in chunks through queues. The world model's
newest weights go to the value learner (which uses DDPG targets until the first arrive) as they
are published, and both learners publish their state to the main process, which acts with the
newest policy, logs the value learner's model use and keeps the newest states for its backups.
Publishing happens after a learner's first update and then every `publish_seconds`. Not
reproducible run to run: the processes race.
"""
from __future__ import annotations

import io
import json
import multiprocessing as mp
import queue
import time

import numpy as np
import torch

from common.buffers import ReplayBuffer
from common.device import flush_denormals, set_single_thread


def _take_data(data_q, replay: ReplayBuffer) -> None:
    try:
        while True:
            replay.add_batch(*data_q.get_nowait())
    except queue.Empty:
        pass


def _newest(q):
    item = None
    try:
        while True:
            item = q.get_nowait()
    except queue.Empty:
        return item


def _offer(q, item) -> None:
    try:
        q.put_nowait(item)
    except queue.Full:   # the reader has not taken the last one yet: it gets a newer one later
        pass


def pack(state) -> bytes:
    """A state dict as bytes: torch tensors sent through a queue would travel as shared-memory
    handles that die with the sending process."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def unpack(blob: bytes):
    return torch.load(io.BytesIO(blob), map_location="cpu", weights_only=False)


def world_model_worker(cfg, seed, dims, device, initial, data_q, to_value, to_main, ready, stop, log_path,
                       publish_seconds) -> None:
    """Train the world model after its frames_before_learning frames (and pretrain_n updates
    where the config asks for them), on its own batch size and replay, until `stop`."""
    from steve.train import make_world_model  # the same construction as the one-process mode

    set_single_thread()
    flush_denormals()
    for q in (to_value, to_main):   # exit without waiting for readers of the last states
        q.cancel_join_thread()
    learner = make_world_model(cfg, *dims, seed, device)
    if initial is not None:
        learner.load_state_dict(initial)
    model_cfg = cfg["model_config"]
    replay = ReplayBuffer(model_cfg["replay_size"], (dims[0],), (dims[1],), seed=seed + 7)
    warm_up = max(model_cfg["batch_size"], model_cfg["frames_before_learning"], 1)
    pretrain, published = model_cfg["pretrain_n"] or 0, None
    ready.set()
    with open(log_path, "a") as log:
        while not stop.is_set():
            _take_data(data_q, replay)
            if len(replay) < warm_up:
                time.sleep(0.005)
                continue
            info = learner.update(tuple(replay.sample(model_cfg["batch_size"])[:5]))
            if pretrain:   # pretraining updates are not counted (reference learner.py)
                pretrain -= 1
                if not pretrain:
                    learner.updates = 0
                continue
            if published is None or time.time() - published >= publish_seconds:
                state = learner.state_dict()
                _offer(to_value, pack(state["model"]))
                _offer(to_main, pack(state))
                published = time.time()
            if learner.updates % model_cfg["log_every_n"] == 0:
                log.write(json.dumps({"updates": learner.updates, "replay": len(replay), **info}) + "\n")
                log.flush()


def value_worker(cfg, seed, dims, device, initial, corrupt_std, data_q, from_world, to_main, final_q, ready,
                 stop, log_path, publish_seconds) -> None:
    """Train the value function after its frames_before_learning frames, as fast as it can, with
    the newest world-model weights it has; publish its state; send the last one at `stop`."""
    from steve.train import make_world_model, value_config
    from steve.valuerl import ValueLearner

    set_single_thread()
    flush_denormals()
    to_main.cancel_join_thread()   # exit without waiting for a reader of the last state
    policy_cfg = cfg["policy_config"]
    learner = ValueLearner(*dims, value_config(cfg, corrupt_std), seed, device=device)
    if initial is not None:
        learner.load_state_dict(initial)
    world = make_world_model(cfg, *dims, seed, device).model
    replay = ReplayBuffer(policy_cfg["replay_size"], (dims[0],), (dims[1],), seed=seed)
    warm_up = max(policy_cfg["batch_size"], policy_cfg["frames_before_learning"], 1)
    loads, info, published, started = 0, {}, None, time.time()
    first_weights = None
    ready.set()
    with open(log_path, "a") as log:
        while not stop.is_set():
            _take_data(data_q, replay)
            weights = _newest(from_world)
            if weights is not None:
                world.load_state_dict(unpack(weights))
                loads += 1
                first_weights = first_weights or round(time.time() - started, 1)
            if len(replay) < warm_up:
                time.sleep(0.005)
                continue
            info = learner.update(tuple(replay.sample(policy_cfg["batch_size"])[:5]), world if loads else None)
            report = {"world_loads": loads, "model_use": info["model_use"], "first_world_weights_s": first_weights,
                      "losses": info}
            if published is None or time.time() - published >= publish_seconds:
                _offer(to_main, pack({"value": learner.state_dict(), **report}))
                published = time.time()
            if learner.updates % policy_cfg["log_every_n"] == 0:
                log.write(json.dumps({"updates": learner.updates, "replay": len(replay), **info}) + "\n")
                log.flush()
    final_q.put(pack({"value": learner.state_dict(), "world_loads": loads, "first_world_weights_s": first_weights,
                      "model_use": info.get("model_use", 0.0), "losses": info}))


class SpeedrunLearners:
    """The main process's handle on both learner processes: start them (from saved states when
    resuming), send transitions, fetch the newest published states, stop and collect."""

    def __init__(self, cfg: dict, seed: int, dims: tuple[int, int], log_dir, device="cpu",
                 value_state=None, world_state=None, corrupt_std: float = 0.0, publish_seconds: float = 0.5,
                 chunk: int = 50):
        ctx = mp.get_context("spawn")
        self.value_data, self.world_data = ctx.Queue(), ctx.Queue()
        world_to_value, self.world_q, self.value_q = ctx.Queue(maxsize=2), ctx.Queue(maxsize=2), ctx.Queue(maxsize=2)
        self.final_q, self.stop_event = ctx.Queue(), ctx.Event()
        ready = [ctx.Event(), ctx.Event()]
        device = str(device)
        self.processes = [
            ctx.Process(target=value_worker, daemon=True,
                        args=(cfg, seed, dims, device, value_state, corrupt_std, self.value_data, world_to_value,
                              self.value_q, self.final_q, ready[0], self.stop_event,
                              str(log_dir / "valuerl.log"), publish_seconds))]
        self.has_world = bool(cfg.get("model_config"))
        if self.has_world:   # DDPG's speedrun has the value learner only
            self.processes.append(ctx.Process(
                target=world_model_worker, daemon=True,
                args=(cfg, seed, dims, device, world_state, self.world_data, world_to_value, self.world_q,
                      ready[1], self.stop_event, str(log_dir / "worldmodel.log"), publish_seconds)))
        self.started = time.time()
        for process in self.processes:
            process.start()
        for event, process in zip(ready, self.processes):   # acting starts when both learners are up
            while not event.wait(0.5):
                if not process.is_alive():
                    raise RuntimeError("a speedrun learner process died while starting; see its log")
        self.ready_seconds = round(time.time() - self.started, 1)
        self.pending: list[tuple] = []
        self.chunk = chunk

    def send(self, transition: tuple) -> None:
        self.pending.append(transition)
        if len(self.pending) >= self.chunk:
            self.send_batch(tuple(zip(*self.pending)))
            self.pending = []

    def send_batch(self, columns: tuple) -> None:
        """Many transitions at once (resuming: everything in the replay memory so far)."""
        arrays = [np.asarray(column) for column in columns]
        self.value_data.put(arrays)
        if self.has_world:
            self.world_data.put(arrays)

    def newest_value(self) -> dict | None:
        blob = _newest(self.value_q)
        return None if blob is None else unpack(blob)

    def newest_world(self) -> dict | None:
        blob = _newest(self.world_q)
        return None if blob is None else unpack(blob)

    def close(self, timeout: float = 60.0) -> dict | None:
        """Stop both learners; the value learner's last state (None if it never came).
        Closing twice is harmless."""
        if self.stop_event.is_set():
            return None
        self.stop_event.set()
        for q in (self.value_data, self.world_data):   # transitions nobody will read any more
            q.cancel_join_thread()
        try:
            final = unpack(self.final_q.get(timeout=timeout))
        except queue.Empty:
            final = None
        for process in self.processes:
            process.join(timeout=timeout)
            if process.is_alive():
                process.terminate()
        return final
