"""Reference poses every regression result should be read against.

- mean pose: every query gets the mean training centre and the mean training rotation;
- oracle nearest training pose: every query gets the pose of the training frame closest to
  its true pose (the best any image-retrieval method could do, since retrieval can only
  return training poses);
- nearest feature: every query gets the pose of the training frame whose pooled backbone
  feature is closest (image retrieval with the network's own features).
Poses: centres (N, 3) metres; quaternions (N, 4) world -> camera, wxyz.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from geoposenet.geometry import canonical_quaternion_np

if TYPE_CHECKING:
    from geoposenet.models import PoseNet
    from geoposenet.scene import Scene, Split

ANGLE_PER_METRE = 25.0  # degrees weighing as much as one metre when comparing poses


def mean_quaternion(quaternions: np.ndarray) -> np.ndarray:
    """The rotation average of (..., N, 4) unit quaternions that minimises the summed squared
    chordal distance: the principal eigenvector of sum q q^T (sign-invariant), for every leading
    index. Returns (..., 4) canonical."""
    q = np.asarray(quaternions, dtype=np.float64)
    _, vectors = np.linalg.eigh(np.swapaxes(q, -1, -2) @ q)
    return canonical_quaternion_np(vectors[..., :, -1])


def mean_pose(
    train_centres: np.ndarray, train_quaternions: np.ndarray, count: int
) -> tuple[np.ndarray, np.ndarray]:
    """The mean training pose repeated for `count` queries: (count, 3), (count, 4)."""
    centre = np.asarray(train_centres, dtype=np.float64).mean(axis=0)
    quaternion = mean_quaternion(train_quaternions)
    return np.tile(centre, (count, 1)), np.tile(quaternion, (count, 1))


def pose_distance(
    centres_a: np.ndarray, quats_a: np.ndarray, centres_b: np.ndarray, quats_b: np.ndarray
) -> np.ndarray:
    """(N, M) combined distance metres + degrees / ANGLE_PER_METRE between two pose sets."""
    position = np.linalg.norm(centres_a[:, None] - centres_b[None], axis=-1)
    dot = np.clip(np.abs(quats_a @ quats_b.T), 0.0, 1.0)
    return position + np.degrees(2 * np.arccos(dot)) / ANGLE_PER_METRE


def nearest_training_pose(
    train_centres: np.ndarray,
    train_quaternions: np.ndarray,
    query_centres: np.ndarray,
    query_quaternions: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each query its nearest training pose by `pose_distance`: the oracle retrieval.
    Returns centres (N, 3), quaternions (N, 4) and the chosen training indices (N,)."""
    index = np.empty(len(query_centres), dtype=np.int64)
    for start in range(0, len(query_centres), 1024):  # bounded memory for big scenes
        chunk = slice(start, start + 1024)
        distances = pose_distance(
            query_centres[chunk], query_quaternions[chunk], train_centres, train_quaternions
        )
        index[chunk] = distances.argmin(axis=1)
    return train_centres[index], train_quaternions[index], index


def split_features(model: PoseNet, scene: Scene, split: Split, batch_size: int = 64) -> np.ndarray:
    """(N, D) float64 unit-length pooled backbone features of the frames of `split`, from centre
    crops at the model's input size (`models.predict`, eval mode)."""
    from geoposenet.data import PoseDataset
    from geoposenet.models import predict

    config = model.config
    dataset = PoseDataset(
        scene, split, np.zeros(3), config.resize, config.crop, train=False, points_per_frame=0
    )
    features = predict(model, dataset, batch_size, features=True).features
    assert features is not None  # asked for
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


def nearest_feature_pose(
    model: PoseNet, scene: Scene, query: Split = "test"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image retrieval: for each `query` frame the pose of the training frame with the highest
    cosine similarity of pooled backbone features. Returns centres (N, 3), quaternions (N, 4)
    and the chosen training indices (N,)."""
    train = split_features(model, scene, "train")
    queries = split_features(model, scene, query)
    index = np.concatenate(
        [(queries[s : s + 1024] @ train.T).argmax(axis=1) for s in range(0, len(queries), 1024)]
    )
    frames = scene.subset("train")
    return frames.centres[index], frames.quaternions[index], index
