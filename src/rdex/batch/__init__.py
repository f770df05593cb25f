"""Dataset-scale explanation runs: a crash-safe manifest, resume, and scale-out with Ray.

:func:`run_batch` explains every image of a folder, a list file or an ImageFolder tree with one or
more RDE methods and writes, per image and method, the explanation picture, the mask and history
(``.npz``) and one line of a JSON Lines manifest (``manifest.jsonl``). The input as the model saw
it is saved once per image, for the HTML report (:mod:`rdex.report`).

Layout of an output folder::

    manifest.jsonl                        one JSON object per line, appended and fsync'ed
    inputs/<name>-<sha8>.png              the resized input
    explanations/<name>-<method>-<key8>.png / .npz

Crash safety: every file is written to a temporary file and renamed into place
(:mod:`rdex.io`), and only then is the manifest line appended with a single ``write`` and an
``fsync``. A record is trusted on resume only when its line is complete JSON and every file it names
still has the SHA-256 the line recorded; a torn last line (a kill during the append) is cut off
before new lines are appended. So a run killed with SIGKILL at any moment loses no finished
explanation, and nothing half-written is ever taken as done.

Resume: the work unit is (image content, method, settings). Its key is the SHA-256 of the image
file's bytes, the method name and every setting that changes the result (model, weights, RDE
config, obfuscation, image size and fit, target, true label). A rerun skips keys that are done and
redoes what is missing or broken. Inputs that failed (not an image, truncated, unreadable) are
recorded with status ``error`` and not retried unless ``retry_errors``.

Ray: with ``ray=RayOptions(...)`` the units are sent in tasks of a few images to actors that load
the model once each; the driver alone reads inputs and writes files and the manifest, through the
same code as a local run, so the outputs are the same and resume works across both modes. Inputs
travel as bytes, so the workers need no shared file system.

Modules: :mod:`~rdex.batch.inputs` (what to explain), :mod:`~rdex.batch.manifest` (the manifest,
the lock, the check of recorded files), :mod:`~rdex.batch.plan` (resume keys, what is left, groups),
:mod:`~rdex.batch.worker` (decode, classify, explain a group), :mod:`~rdex.batch.writer` (files,
then manifest lines), :mod:`~rdex.batch.local` (:func:`run_batch` and the local driver) and
:mod:`~rdex.batch.ray_driver` (Ray).
"""

from rdex.batch.inputs import IMAGE_SUFFIXES, MAX_LIST_BYTES, InputItem, LabelMode, find_inputs
from rdex.batch.local import run_batch
from rdex.batch.manifest import MANIFEST_NAME, latest_records, read_manifest
from rdex.batch.plan import BatchSummary, unit_key
from rdex.batch.ray_driver import RayOptions

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_LIST_BYTES",
    "LabelMode",
    "MANIFEST_NAME",
    "InputItem",
    "RayOptions",
    "BatchSummary",
    "find_inputs",
    "read_manifest",
    "latest_records",
    "unit_key",
    "run_batch",
]
