"""optics.validate: host-side checks that name the offending argument."""
import numpy as np
import pytest

from diffcamera_jax import optics

IMAGE = np.zeros((2, 8, 8, 3), np.float32)
DISPARITY = np.zeros((2, 8, 8), np.float32)


def test_valid_inputs_pass():
  optics.validate(IMAGE, DISPARITY, focus_disparity=np.array([0.1, 1.0]), blur=3.0,
                  aperture=optics.Aperture(np.array([0, 5]), np.array([0.0, 1.0])),
                  point=np.array([[0.0, 1.0], [0.5, 0.5]]))


@pytest.mark.parametrize("kwargs,name", [
    (dict(image=IMAGE[..., :2]), "image"),
    (dict(image=np.full_like(IMAGE, np.nan)), "image"),
    (dict(disparity=DISPARITY[:, :4]), "disparity"),
    (dict(disparity=DISPARITY + 1.5), "disparity"),
    (dict(disparity=np.full_like(DISPARITY, np.inf)), "disparity"),
    (dict(focus_disparity=-0.1), "focus_disparity"),
    (dict(focus_disparity=np.zeros(3)), "focus_disparity"),
    (dict(blur=np.array([1.0, -2.0])), "blur"),
    (dict(blur=np.nan), "blur"),
    (dict(point=np.array([0.5, 1.2])), "point"),
    (dict(point=np.zeros((3, 2))), "point"),
    (dict(aperture=optics.Aperture(2, 0.0)), "aperture.blades"),
    (dict(aperture=optics.Aperture(-1, 0.0)), "aperture.blades"),
    (dict(aperture=optics.Aperture(np.array([0, 1]), 0.0)), "aperture.blades"),
    (dict(aperture=optics.Aperture(5, np.inf)), "aperture.rotation"),
])
def test_bad_inputs_raise_naming_the_argument(kwargs, name):
  args = dict(image=IMAGE, disparity=DISPARITY)
  args.update(kwargs)
  with pytest.raises(ValueError, match=name.replace(".", r"\.")):
    optics.validate(**args)


def test_a_blur_beyond_max_radius_is_rejected_not_clipped():
  disparity = np.zeros((2, 8, 8), np.float32)
  disparity[:, :4] = 0.5  # |D - d_f| is at most 0.5 when focused at 0 or 0.5
  optics.validate(IMAGE, disparity, focus_disparity=np.array([0.0, 0.5]), blur=100.0,
                  max_radius=50.0)
  with pytest.raises(ValueError, match="blur .* 60.0 px, beyond max_radius 50"):
    optics.validate(IMAGE, disparity, focus_disparity=np.array([0.0, 0.5]),
                    blur=np.array([120.0, 10.0]), max_radius=50.0)
  with pytest.raises(ValueError, match="max_radius 150"):  # without a focus: |D - d_f| <= 1
    optics.validate(IMAGE, disparity, blur=151.0, max_radius=150.0)
