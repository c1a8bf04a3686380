"""Callbacks: hooks fit() calls at the start and end of training, epochs and batches.

A callback sees the model as ``self.model`` and may set ``model.stop_training = True``.
``logs`` at epoch end holds the epoch's running means: 'loss', 'accuracy', 'val_loss', ...

    model.fit(x, y, validation_split=0.1, callbacks=[
        EarlyStopping(monitor='val_loss', patience=2, restore_best_weights=True),
        ModelCheckpoint('best.npz', save_best_only=True),      # atomic writes
        CSVLogger('log.csv')])

EarlyStopping, ModelCheckpoint, CSVLogger and LambdaCallback follow Keras 3's rules
(keras/src/callbacks/).
"""

from __future__ import annotations

import csv
import io
import os
import warnings

from minicnn.atomic import atomic_write, check_folder_writable, check_writable
from minicnn.validation import (
    ArgumentTypeError,
    check_bool,
    check_choice,
    check_float,
    check_int,
    invalid,
)


class Callback:
    """Base class; override the hooks you need."""

    def __init__(self):
        self.model = None
        self.params: dict = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params: dict):
        self.params = params

    def on_train_begin(self, logs=None): ...

    def on_train_end(self, logs=None): ...

    def on_epoch_begin(self, epoch, logs=None): ...

    def on_epoch_end(self, epoch, logs=None): ...

    def on_train_batch_begin(self, batch, logs=None): ...

    def on_train_batch_end(self, batch, logs=None): ...


class History(Callback):
    """Records each epoch's logs: ``history.history['loss'][epoch]``, as Keras's History."""

    def __init__(self):
        super().__init__()
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)


class LambdaCallback(Callback):
    """A callback from functions, as keras.callbacks.LambdaCallback.

    Each hook's function takes Keras's positional arguments: on_epoch_begin / on_epoch_end
    (epoch, logs), on_train_begin / on_train_end (logs), on_train_batch_begin /
    on_train_batch_end (batch, logs). ``LambdaCallback(on_epoch_end=lambda epoch, logs:
    print(epoch, logs['loss']))``. Other keyword arguments become attributes, as in Keras.
    """

    _HOOKS = ("on_epoch_begin", "on_epoch_end", "on_train_begin", "on_train_end",
              "on_train_batch_begin", "on_train_batch_end")

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_begin=None,
                 on_train_end=None, on_train_batch_begin=None, on_train_batch_end=None,
                 **kwargs):
        functions = dict(zip(self._HOOKS, (on_epoch_begin, on_epoch_end, on_train_begin,
                                           on_train_end, on_train_batch_begin,
                                           on_train_batch_end)))
        for hook, fn in functions.items():
            if fn is not None and not callable(fn):
                raise invalid(hook, "a function or None", fn, ArgumentTypeError)
        super().__init__()
        self.__dict__.update(kwargs)
        self._functions = {k: fn for k, fn in functions.items() if fn is not None}

    def _call(self, hook, *args):
        fn = self._functions.get(hook)
        if fn is not None:
            fn(*args)

    def on_train_begin(self, logs=None):
        self._call("on_train_begin", logs)

    def on_train_end(self, logs=None):
        self._call("on_train_end", logs)

    def on_epoch_begin(self, epoch, logs=None):
        self._call("on_epoch_begin", epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._call("on_epoch_end", epoch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        self._call("on_train_batch_begin", batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self._call("on_train_batch_end", batch, logs)


class CallbackList:
    """Calls a hook on every callback in order."""

    def __init__(self, callbacks, model, params):
        self.callbacks = list(callbacks or [])
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(
                    f"Invalid value in argument callbacks. Expected Callback "
                    f"instances. Received: {cb!r}"
                )
            cb.set_model(model)
            cb.set_params(params)

    def __getattr__(self, hook):
        if not hook.startswith("on_"):
            raise AttributeError(hook)

        def call(*args, **kwargs):
            for cb in self.callbacks:
                getattr(cb, hook)(*args, **kwargs)

        return call


# --- monitoring a logged quantity --------------------------------------------------------------
class MonitorCallback(Callback):
    """Base of EarlyStopping and ModelCheckpoint: is a logged value better than the best so far?

    Args:
        monitor: the logs key watched ('val_loss', 'val_accuracy', 'loss', 'accuracy').
        mode: 'min', 'max' or 'auto' (loss -> min, accuracy -> max, from the name without
            'val_'). Keras warns and falls back to 'auto' on an unknown mode, and raises on an
            unknown metric only at the first epoch's end: minicnn raises both at construction.
        baseline: starting best value (None: the first value seen is the best).
        min_delta: an improvement must beat the best by more than |min_delta|.
    """

    def __init__(self, monitor="val_loss", mode="auto", baseline=None, min_delta=0):
        super().__init__()
        mode = check_choice(mode, "mode", ("auto", "min", "max"))
        if not isinstance(monitor, str):
            raise invalid("monitor", "a logs key such as 'val_loss'", monitor, ArgumentTypeError)
        if baseline is not None:
            baseline = check_float(baseline, "baseline")
        self.monitor = monitor
        self.mode = mode
        self.best = baseline
        self.min_delta = abs(check_float(min_delta, "min_delta"))
        self.direction = mode if mode != "auto" else self._auto_direction(monitor)

    def _auto_direction(self, monitor) -> str:
        name = monitor.removeprefix("val_")
        if name == "loss":
            return "min"
        if name in ("accuracy", "acc"):
            return "max"
        raise ValueError(
            f"{type(self).__name__} received monitor={monitor!r}, but minicnn "
            f"can't tell whether it should be maximized or minimized. Pass "
            f"mode='max' or mode='min'."
        )

    def _is_improvement(self, value, reference) -> bool:
        """Keras's rule: better than reference by more than min_delta (strictly)."""
        if reference is None:
            return True
        if self.direction == "min":
            return value + self.min_delta < reference
        return value - self.min_delta > reference


class EarlyStopping(MonitorCallback):
    """Stop training when the monitored quantity has stopped improving (Keras 3's rules).

    Args:
        monitor, mode, min_delta: see MonitorCallback.
        patience: epochs without improvement after which training stops.
        verbose: 1 prints when it stops and when it restores weights.
        baseline: training continues only while the monitored value beats it: an epoch
            that improves on the best but not on the baseline still counts toward patience.
        restore_best_weights: at the end of training, set the weights of the best epoch.
            Keras 3 does this whenever training ends, stopped early or not
            (callbacks/early_stopping.py, on_train_end), and so does minicnn.
        start_from_epoch: epochs to ignore before watching (a warm-up).

    Attributes after fit: stopped_epoch (0-based; 0 if it never stopped), best, best_epoch.

    The rule, epoch by epoch: wait += 1; if the value improves on the best, it becomes the
    best (and wait = 0 if it also beats the baseline); otherwise, if wait >= patience and
    epoch > 0, stop.
    """

    def __init__(
        self,
        monitor="val_loss",
        min_delta=0,
        patience=0,
        verbose=0,
        mode="auto",
        baseline=None,
        restore_best_weights=False,
        start_from_epoch=0,
    ):
        super().__init__(monitor, mode, min_delta=min_delta)
        self.patience = check_int(patience, "patience", minimum=0)
        self.start_from_epoch = check_int(start_from_epoch, "start_from_epoch", minimum=0)
        self.verbose = check_int(verbose, "verbose", minimum=0)
        self.baseline = None if baseline is None else check_float(baseline, "baseline")
        self.restore_best_weights = check_bool(restore_best_weights, "restore_best_weights")
        self.wait = 0
        self.stopped_epoch = 0
        self.best_weights = None
        self.best_epoch = 0

    def on_train_begin(self, logs=None):
        # reset, so one instance can serve several fit() calls (as Keras)
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0

    def on_epoch_end(self, epoch, logs=None):
        current = _monitored(self, logs)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            # never improved yet: the current weights are the best there are
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print(
                    f"Restoring model weights from the end of the best epoch: "
                    f"{self.best_epoch + 1}."
                )
            self.model.set_weights(self.best_weights)


def _monitored(cb, logs):
    """logs[cb.monitor], or None with Keras's warning when it is not logged."""
    logs = logs or {}
    value = logs.get(cb.monitor)
    if value is None:
        warnings.warn(
            f"{type(cb).__name__} is conditioned on metric `{cb.monitor}` which is "
            f"not available. Available metrics are: {','.join(logs)}",
            stacklevel=3,
        )
    return value


class ModelCheckpoint(MonitorCallback):
    """Save the model (or its weights) at the end of every epoch, or of every better epoch.

    Args:
        filepath: an .npz path, formatted with the epoch (1-based) and the logs:
            'ckpt/model-{epoch:02d}-{val_loss:.4f}.npz'. Missing folders are created.
        monitor, mode: see MonitorCallback (used with save_best_only).
        save_best_only: save only when the monitored value improves on the best so far (if
            the value is not logged, save anyway, with Keras's warning).
        save_weights_only: model.save_weights(path) instead of model.save(path).
        initial_value_threshold: a best value to beat from the start (Keras's name).
        verbose: 1 prints a line per save decision, as Keras.

    Every write goes through atomic.atomic_write (temp file, fsync, os.replace): a crash
    mid-write leaves the previous checkpoint whole.
    """

    def __init__(
        self,
        filepath,
        monitor="val_loss",
        verbose=0,
        save_best_only=False,
        save_weights_only=False,
        mode="auto",
        initial_value_threshold=None,
    ):
        super().__init__(monitor, mode, baseline=initial_value_threshold)
        if not isinstance(filepath, (str, os.PathLike)):
            raise invalid("filepath", "a path ending in '.npz'", filepath, ArgumentTypeError)
        self.filepath = os.fspath(filepath)
        if not self.filepath.endswith(".npz"):
            raise ValueError(
                f"Invalid value for argument filepath. minicnn saves .npz files: "
                f"the filepath must end in '.npz'. Received: "
                f"filepath={self.filepath!r}"
            )
        self.verbose = check_int(verbose, "verbose", minimum=0)
        self.save_best_only = check_bool(save_best_only, "save_best_only")
        self.save_weights_only = check_bool(save_weights_only, "save_weights_only")

    def on_train_begin(self, logs=None):
        # A folder that cannot be written should stop fit() now, not after an epoch of work.
        # Only the part of the path before any {placeholder} is known yet.
        static = self.filepath.split("{", 1)[0]
        folder = os.path.dirname(static) if "{" in self.filepath else os.path.dirname(
            self.filepath)
        check_folder_writable(folder or ".", "ModelCheckpoint filepath")

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        try:
            path = self.filepath.format(epoch=epoch + 1, **logs)
        except KeyError as e:
            raise KeyError(
                f'Failed to format this callback filepath: "{self.filepath}". Reason: {e}'
            ) from e
        if not self._should_save(epoch, logs, path):
            return
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: finished saving model to {path}")

    def _should_save(self, epoch, logs, path) -> bool:
        if not self.save_best_only:
            if self.verbose > 0:
                print(f"\nEpoch {epoch + 1}: saving model to {path}")
            return True
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(f"Can save best model only with {self.monitor} available.", stacklevel=3)
            return True
        best = "None" if self.best is None else f"{self.best:.5f}"
        if self._is_improvement(current, self.best):
            if self.verbose > 0:
                print(
                    f"\nEpoch {epoch + 1}: {self.monitor} improved from {best} to "
                    f"{current:.5f}, saving model to {path}"
                )
            self.best = current
            return True
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from {best}")
        return False


class CSVLogger(Callback):
    """Write each epoch's logs as a CSV row: epoch (0-based), then the keys in sorted order.

    Args:
        filename: the .csv path.
        separator: the field separator.
        append: keep the rows already in the file (the header is written only to an empty file).

    Keras's columns: the logs' keys sorted; without validation, val_<key> columns are added
    anyway and hold 'NA'. Rows end in '\\r\\n' (the csv module's 'excel' dialect, as Keras).
    Unlike Keras, which appends to an open file, the whole file is rewritten atomically after
    each epoch, so a crash never leaves half a row.
    """

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        if not isinstance(filename, (str, os.PathLike)):
            raise invalid("filename", "a path", filename, ArgumentTypeError)
        if not isinstance(separator, str) or len(separator) != 1:
            raise invalid("separator", "one character", separator)
        self.filename = os.fspath(filename)
        self.sep = separator
        self.append = check_bool(append, "append")
        self.keys = None
        self._text = ""
        self._header = True

    def on_train_begin(self, logs=None):
        check_writable(self.filename, "CSVLogger filename")  # now, not after the first epoch
        self._text, self._header, self.keys = "", True, None
        if self.append and os.path.exists(self.filename):
            with open(self.filename, newline="") as f:
                self._text = f.read()
            self._header = not self._text.split("\n", 1)[0]

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
            if self.keys and not any(k.startswith("val_") for k in self.keys):
                self.keys += [f"val_{k}" for k in self.keys]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=["epoch", *self.keys], delimiter=self.sep)
        if self._header:
            writer.writeheader()
            self._header = False
        writer.writerow({"epoch": epoch, **{k: logs.get(k, "NA") for k in self.keys}})
        self._text += buf.getvalue()
        data = self._text.encode()
        atomic_write(self.filename, lambda f: f.write(data))
