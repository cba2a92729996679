"""litemono.pose_eval: snippet ATE against hand computations and known trajectories."""
import numpy as np
import pytest
import torch

from litemono import pose_eval as P


def rigid(rotvec, t):
    """4x4 transform from a rotation vector (Rodrigues, written out) and a translation."""
    rotvec = np.asarray(rotvec, np.float64)
    angle = np.linalg.norm(rotvec)
    K = np.zeros((3, 3))
    if angle > 0:
        x, y, z = rotvec / angle
        K = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    T = np.eye(4)
    T[:3, :3] = np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K
    T[:3, 3] = t
    return T


def random_trajectory(n, seed=0):
    rng = np.random.default_rng(seed)
    poses = [np.eye(4)]
    for _ in range(n - 1):
        step = rigid(rng.normal(0, 0.05, 3), rng.normal([0, 0, 1.0], 0.1))
        poses.append(poses[-1] @ step)
    return np.stack(poses)


def test_read_odometry_poses(tmp_path):
    poses = random_trajectory(4)
    path = tmp_path / "09.txt"
    path.write_text("\n".join(" ".join(f"{v:.12e}" for v in p[:3].reshape(-1)) for p in poses))
    np.testing.assert_allclose(P.read_odometry_poses(path), poses, atol=1e-12)
    path.write_text("1 2 3\n")
    with pytest.raises(ValueError, match="12 numbers"):
        P.read_odometry_poses(path)


def test_relative_poses_map_camera_i_to_i_plus_1():
    poses = random_trajectory(3)
    motions = P.relative_poses(poses)
    point_in_cam0 = np.array([1.0, -2.0, 5.0, 1.0])
    world = poses[0] @ point_in_cam0
    np.testing.assert_allclose(motions[0] @ point_in_cam0, np.linalg.inv(poses[1]) @ world)


def test_straight_line_positions():
    poses = np.stack([rigid([0, 0, 0], [0, 0, 2.0 * i]) for i in range(5)])
    xyz = P.snippet_positions(P.relative_poses(poses))
    np.testing.assert_allclose(xyz[:, 2], [0, -2, -4, -6, -8])


def test_snippet_ate_hand_computed():
    gt = np.array([[0, 0, 0], [0, 0, 1], [0, 0, 2]], np.float64)
    pred = np.array([[5, 5, 5], [5, 5, 7], [5, 5, 9]], np.float64)  # offset, scale 2
    assert P.snippet_ate(gt, pred) == pytest.approx(0, abs=1e-12)
    pred = np.array([[0, 0, 0], [0, 0, 1], [0, 0, 3]], np.float64)
    # least squares scale: (1 + 6) / (1 + 9) = 0.7; residuals 0, -0.3, 0.1
    expected = np.sqrt(0.3 ** 2 + 0.1 ** 2) / 3
    assert P.snippet_ate(gt, pred) == pytest.approx(expected)


def test_scaled_prediction_has_zero_ate_and_noise_does_not():
    gt = P.relative_poses(random_trajectory(12))
    pred = gt.copy()
    pred[:, :3, 3] *= 0.27  # monocular: right motion, unknown scale
    mean, std, errors = P.evaluate_ate(pred, gt)
    assert errors.shape == (11,) and mean == pytest.approx(0, abs=1e-12) and std < 1e-12
    noisy = pred.copy()
    noisy[3, :3, 3] += [0.05, 0.0, 0.0]
    _, _, errors = P.evaluate_ate(noisy, gt)
    # motion 3 belongs to the snippets starting at 0, 1, 2, 3 only
    assert np.all(errors[:4] > 1e-4) and np.allclose(errors[4:], 0, atol=1e-12)


def test_length_mismatch_is_explained():
    with pytest.raises(ValueError, match="do not match"):
        P.evaluate_ate(np.zeros((3, 4, 4)), np.zeros((4, 4, 4)))


class FixedPoseNet(torch.nn.Module):
    """Returns preset (axisangle, translation) per call, ignoring the images."""

    def __init__(self, params):
        super().__init__()
        self.params = list(params)

    def forward(self, pair):
        assert pair.shape[1] == 6
        rot, trans = self.params.pop(0)
        shape = (pair.shape[0], 2, 1, 3)
        return rot.expand(shape), trans.expand(shape)


def test_predict_relative_poses_uses_transformation_from_parameters():
    rot, trans = torch.tensor([0.0, 0.1, 0.0]), torch.tensor([0.2, 0.0, 1.0])
    net = FixedPoseNet([(rot, trans)])
    batch = {("color", 0, 0): torch.zeros(2, 3, 8, 16), ("color", 1, 0): torch.ones(2, 3, 8, 16)}
    motions = P.predict_relative_poses(net, [batch], torch.device("cpu"))
    assert motions.shape == (2, 4, 4)
    np.testing.assert_allclose(motions[1], rigid([0, 0.1, 0], [0.2, 0, 1.0]), atol=1e-6)


@pytest.fixture
def odometry_view(synthetic_kitti, tmp_path):
    """The first synthetic drive laid out as KITTI odometry sequence 09 (links, not copies)."""
    info = synthetic_kitti
    drive, count = info.drives[0], info.frames_per_drive
    images = tmp_path / "sequences" / "09" / "image_2"
    images.mkdir(parents=True)
    for frame in range(count):
        (images / f"{frame:06d}.jpg").symlink_to(info.image_path(drive, frame))
    (tmp_path / "poses").mkdir()
    (tmp_path / "poses" / "09.txt").write_text(info.poses_path(drive).read_text())
    split = tmp_path / "test_files_09.txt"
    split.write_text("".join(f"9 {frame} l\n" for frame in range(count - 1)))
    return tmp_path, split


def test_known_synthetic_poses_give_zero_ate(odometry_view):
    from scipy.spatial.transform import Rotation
    from torch.utils.data import DataLoader

    from litemono.data.kitti import KITTIOdomDataset

    root, split = odometry_view
    gt = P.relative_poses(P.read_odometry_poses(root / "poses" / "09.txt"))
    assert np.abs(gt[:, :3, 3]).max() > 0.1  # the camera really moves
    # a stand-in network that answers each pair with its true motion at half the scale
    truth = [(torch.tensor(Rotation.from_matrix(m[:3, :3]).as_rotvec(), dtype=torch.float32),
              torch.tensor(0.5 * m[:3, 3], dtype=torch.float32)) for m in gt]
    dataset = KITTIOdomDataset(str(root), split.read_text().splitlines(), 64, 192,
                               frame_ids=[0, 1], num_scales=1)
    pred = P.predict_relative_poses(FixedPoseNet(truth), DataLoader(dataset, batch_size=1),
                                    torch.device("cpu"))
    np.testing.assert_allclose(pred[:, :3, :3], gt[:, :3, :3], atol=1e-5)
    mean, _, errors = P.evaluate_ate(pred, gt)
    assert len(errors) == len(gt) and mean < 1e-5


def test_evaluate_pose_script(odometry_view, tmp_path):
    import importlib.util
    import json

    from conftest import ROOT
    from litemono import io
    from litemono.config import ModelConfig
    from litemono.models.build import build_pose_network

    root, split = odometry_view
    torch.manual_seed(0)
    net = build_pose_network(ModelConfig(weights_init="scratch"))
    weights = tmp_path / "weights"
    io.save_torch(net.encoder.state_dict(), weights / "pose_encoder.pth")
    io.save_torch(net.decoder.state_dict(), weights / "pose.pth")
    spec = importlib.util.spec_from_file_location("evaluate_pose",
                                                  ROOT / "scripts" / "evaluate_pose.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    saved = tmp_path / "poses.npy"
    result = script.main(["--load_weights_folder", str(weights), "--data_path", str(root),
                          "--split_file", str(split), "--height", "64", "--width", "192",
                          "--device", "cpu", "--num_workers", "0", "--batch_size", "4",
                          "--save_pred_poses", str(saved)])
    gt = P.relative_poses(P.read_odometry_poses(root / "poses" / "09.txt"))
    mean, std, _ = P.evaluate_ate(np.load(saved), gt)
    assert json.loads(json.dumps(result)) == {"ate_mean": mean, "ate_std": std}
    assert mean > 0  # random weights do not know the motion
