"""Outdoor-style procedural scenes: a ground plane in perspective with objects standing on it.

These carry the depth cues of a photograph, with exact disparity: a horizon (possibly rolled or
above the frame), ground whose disparity grows linearly below it, ground texture drawn in world
coordinates so it shrinks and fades towards the horizon (texture gradient, aerial haze), objects
standing on the ground that are smaller and higher in the frame when farther, occlusion by a
z-buffer, contact shadows, side lighting, muted natural colours and specular highlights.

Camera model: a pinhole at height 1 above flat ground. With image coordinates in units of the
longer image side, a ground point at elevation `e` below the horizon line lies at depth Z = 1 / e
and lateral position X = r / e (`r` along the horizon), and an object of world height h standing
at depth Z spans h / Z = h * e in the image. Disparity is `g * e` on the ground (g sets the
nearest disparity in the frame), `g / Z` on objects, 0 in the sky.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data_pipeline import textures

OBJECT_KINDS = ("tree", "block", "dome", "sphere", "post")


@dataclass(frozen=True)
class Placement:
  """Where one object stands: along-horizon position, base elevation, image height, disparity."""
  kind: str
  r: float  # along the horizon line, from the image centre
  e: float  # elevation of the base below the horizon line
  height: float  # image height (units of the longer side) = world height * e
  width: float  # image width
  disparity: float


@dataclass(frozen=True)
class Camera:
  """The horizon line and the disparity scale of one scene."""
  centre_u: float
  horizon_v: float
  roll: float
  gain: float  # disparity per unit elevation below the horizon

  def to_horizon(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(r, e): position along the horizon line and elevation below it."""
    c, s = np.cos(self.roll), np.sin(self.roll)
    du, dv = u - self.centre_u, v - self.horizon_v
    return du * c + dv * s, -du * s + dv * c

  def to_image(self, r: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(u, v) image coordinates of horizon coordinates (r, e): the inverse of `to_horizon`."""
    c, s = np.cos(self.roll), np.sin(self.roll)
    return self.centre_u + r * c - e * s, self.horizon_v + r * s + e * c


def draw_camera(rng: np.random.Generator, height: float, width: float) -> Camera:
  """A random horizon (from above the frame to 60 % down it, rolled up to ~6 degrees)."""
  horizon_v = height * rng.uniform(-0.15, 0.6)
  nearest = rng.uniform(0.6, 1.0)  # disparity at the bottom centre of the frame
  return Camera(centre_u=width / 2, horizon_v=horizon_v, roll=rng.uniform(-0.1, 0.1),
                gain=nearest / (height - horizon_v))


def draw_placements(rng: np.random.Generator, camera: Camera, height: float,
                    width: float) -> list[Placement]:
  """Objects on the ground, nearest first. Image size and height above the base follow from depth."""
  bottom = height - camera.horizon_v  # elevation of the bottom centre
  placements = []
  for _ in range(int(rng.integers(3, 14))):
    kind = OBJECT_KINDS[int(rng.integers(len(OBJECT_KINDS)))]
    e = bottom * rng.uniform(0.05, 1.1) ** 2  # more objects far away, as in a photograph
    r = rng.uniform(-0.5, 0.5) * width * 1.1
    world_height = {"tree": rng.uniform(1.0, 4.0), "block": rng.uniform(0.4, 3.0),
                    "dome": rng.uniform(0.15, 0.8), "sphere": rng.uniform(0.15, 0.6),
                    "post": rng.uniform(0.6, 2.0)}[kind]
    aspect = {"tree": rng.uniform(0.4, 0.9), "block": rng.uniform(0.3, 1.5),
              "dome": rng.uniform(1.2, 2.5), "sphere": 1.0, "post": rng.uniform(0.1, 0.3)}[kind]
    # An object never fills the frame: one that would be wider than 45 % of it or taller than 90 %
    # stands farther away instead (its size and base still follow from its depth).
    e = min(e, 0.45 * width / (world_height * aspect), 0.9 * height / world_height)
    placements.append(Placement(kind=kind, r=float(r), e=float(e), height=float(world_height * e),
                                width=float(world_height * aspect * e),
                                disparity=float(min(camera.gain * e, 1.0))))
  placements.sort(key=lambda p: -p.disparity)
  return placements


def paint_ground_scene(rng: np.random.Generator, u: np.ndarray,
                       v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(image [H, W, 3] sRGB, disparity [H, W]) of one outdoor scene on the grid (u, v).

  (u, v) are pixel centres in units of the longer image side. Every layout draw happens before
  any array work, so the layout does not depend on the resolution.
  """
  rows, cols = u.shape
  scale = float(max(rows, cols))
  height, width = rows / scale, cols / scale
  camera = draw_camera(rng, height, width)
  placements = draw_placements(rng, camera, height, width)
  light = float(rng.uniform(-1.0, 1.0))  # horizontal direction the light comes from
  haze_depth = float(rng.uniform(15.0, 80.0))  # camera heights over which haze builds up
  overcast = rng.random() < 0.3
  zenith = (textures.natural_colour(rng, saturation=(1.0, 6.0), value=(8.0, 3.0)) if overcast
            else textures.natural_colour(rng, hues=(0.53, 0.68), saturation=(4.0, 3.0),
                                         value=(6.0, 2.0)))
  horizon_colour = 0.5 * zenith + 0.5 * np.float32(rng.uniform(0.8, 1.0))
  tint = rng.uniform(0.9, 1.1, size=3).astype(np.float32) * np.float32(rng.uniform(0.8, 1.1))
  sky_rng, hill_rng, ground_rng, object_rng = (textures.child(rng) for _ in range(4))
  has_hills = rng.random() < 0.6
  hill_distance = float(rng.uniform(25.0, 150.0))

  r, e = camera.to_horizon(u, v)
  image = np.empty((rows, cols, 3), np.float32)
  disparity = np.zeros((rows, cols), np.float32)
  sky = e <= 0
  image[sky] = _sky(sky_rng, u[sky], v[sky], e[sky], zenith, horizon_colour, overcast)
  ground = ~sky
  if has_hills:
    hills = _hill_mask(hill_rng, r, e, hill_distance)
    disparity[hills] = camera.gain / hill_distance
    image[hills] = _haze(_hill_texture(hill_rng, u[hills], v[hills]), hill_distance, haze_depth,
                         horizon_colour)
    ground &= ~hills
  disparity[ground] = np.minimum(camera.gain * e[ground], 1.0)
  image[ground] = _ground(ground_rng, r[ground], e[ground], scale, haze_depth, horizon_colour)
  for placement in placements:
    _paint_object(textures.child(object_rng), placement, camera, light, u, v, image, disparity,
                  haze_depth, horizon_colour)
  image *= tint
  np.clip(image, 0.0, 1.0, out=image)
  return image, disparity


# ------------------------------------------------------------------------------------ surfaces


def _haze(colour: np.ndarray, depth, haze_depth: float, horizon_colour: np.ndarray) -> np.ndarray:
  """Aerial perspective: far surfaces fade towards the horizon colour."""
  weight = (1.0 - np.exp(-np.asarray(depth, np.float32) / haze_depth))[..., None]
  return colour * (1 - weight) + horizon_colour * weight


def _sky(rng, u, v, e, zenith, horizon_colour, overcast) -> np.ndarray:
  up = np.clip(-e / 0.5, 0.0, 1.0)[..., None]
  colour = horizon_colour * (1 - up) + zenith * up
  clouds = textures.fractal_noise(rng, u * 0.5, v * 0.5)
  cover = np.clip((clouds - rng.uniform(0.45, 0.7)) * 4.0, 0.0, 1.0)[..., None]
  cloud_colour = np.float32(rng.uniform(0.75, 1.0) if not overcast else rng.uniform(0.6, 0.9))
  return colour * (1 - cover) + cloud_colour * cover


def _hill_mask(rng, r, e, distance) -> np.ndarray:
  """Distant hills or a tree line: a silhouette above the horizon, in front of the far ground."""
  lattice = rng.random((64, 64)).astype(np.float32)
  amplitude, cells = rng.uniform(0.02, 0.15), rng.uniform(3.0, 12.0)
  profile = sum(0.5 ** k * textures.lattice_noise(lattice, r * cells * 2 ** k + 7.0 * k,
                                                  np.zeros_like(r) + 3.0 * k) for k in range(3))
  top = -amplitude * profile / 1.75
  return (e > top) & (e < 1.0 / distance)


def _hill_texture(rng, u, v) -> np.ndarray:
  colours = (textures.natural_colour(rng, hues=(0.2, 0.45), value=(3.0, 4.0)),
             textures.natural_colour(rng, hues=(0.1, 0.6), value=(3.0, 4.0)))
  return textures.texture(rng, u, v, frame=(0.5, 0.5, 0.5), colours=colours, kind=0)


def _ground(rng, r, e, scale, haze_depth, horizon_colour) -> np.ndarray:
  """Ground texture in world coordinates (X, Z) = (r, 1) / e, low-passed where it would alias."""
  e = np.maximum(e, 1e-4)
  depth = 1.0 / e
  x, z = r * depth, depth
  palette = rng.integers(3)  # grass, earth / sand, stone / asphalt
  hues = [(0.17, 0.33), (0.05, 0.13), (0.0, 1.0)][palette]
  sat = [(3.0, 3.0), (2.0, 3.0), (1.0, 8.0)][palette]
  c0 = textures.natural_colour(rng, hues=hues, saturation=sat, value=(3.0, 4.0))
  c1 = textures.natural_colour(rng, hues=hues, saturation=sat, value=(5.0, 3.0))
  nyquist = 0.25 * scale  # cycles per unit image length kept before fading to the mean

  def kept(frequency):
    # How much of a pattern survives at this image frequency (cycles per unit image length): a
    # pattern of `cells` per unit of ground has cells / e^2 across the horizon (dZ/de = 1 / e^2)
    # and cells / e along it.
    return np.exp(-(frequency / nyquist) ** 2)

  def octave(lattice, cells):
    keep = kept(cells / e ** 2)
    return keep * textures.lattice_noise(lattice, x * cells, z * cells) + (1 - keep) * 0.5

  base = rng.uniform(1.0, 4.0)
  lattices = [rng.random((128, 128)).astype(np.float32) for _ in range(6)]
  noise = sum(0.7 ** k * octave(lattices[k], base * 2 ** k) for k in range(6)) / 2.94
  pattern = rng.integers(3)
  t = np.clip((noise - 0.5) * rng.uniform(3.0, 5.0) + 0.5, 0.0, 1.0)
  if pattern == 1:  # paving: tiles with darker joints
    tile = rng.uniform(0.3, 1.5)
    joints = np.minimum(np.abs((x / tile) % 1.0 - 0.5), np.abs((z / tile) % 1.0 - 0.5)) > 0.45
    t = t * (1 - 0.6 * kept(1.0 / tile / e ** 2) * joints)
  elif pattern == 2:  # rows (furrows, planks) running away from the camera
    period = rng.uniform(0.3, 1.2)
    stripes = 0.5 + 0.5 * np.cos(2 * np.pi * x / period)
    keep = kept(1.0 / period / e)
    t = 0.6 * t + 0.4 * (keep * stripes + (1 - keep) * 0.5)
  colour = c0 + (c1 - c0) * t[..., None]
  colour = colour + rng.uniform(0.005, 0.03) * rng.standard_normal(colour.shape, dtype=np.float32)
  return _haze(colour, depth, haze_depth, horizon_colour).astype(np.float32)


# ------------------------------------------------------------------------------------ objects


def _object_shape(kind: str, x: np.ndarray, y: np.ndarray, height: float,
                  width: float) -> tuple[np.ndarray, np.ndarray]:
  """(mask, part): the object's silhouette in base-relative coordinates (x right, y up), and a
  second-material mask (trunk, pole, side face)."""
  half = width / 2
  if kind == "tree":
    trunk = (np.abs(x) <= 0.07 * width + 0.02 * height) & (y >= -0.02 * height) & (y <= 0.6 * height)
    theta = np.arctan2(y - 0.62 * height, x)
    radius = np.hypot(x / max(half, 1e-6), (y - 0.62 * height) / (0.38 * height))
    crown = radius <= 1.0 + 0.12 * np.cos(5 * theta) + 0.06 * np.cos(9 * theta + 1.0)
    return trunk | crown, trunk & ~crown
  if kind == "block":
    front = (np.abs(x) <= half) & (y >= -0.01 * height) & (y <= height)
    depth = 0.35 * width
    side = (x > half) & (x <= half + depth) & (y >= -0.01 * height) & (y <= height + 0.3 * (x - half))
    return front | side, side
  if kind == "dome":
    return ((x / max(half, 1e-6)) ** 2 + (y / height) ** 2 <= 1.0) & (y >= -0.03 * height), \
        np.zeros_like(x, bool)
  if kind == "sphere":
    radius = height / 2
    return np.hypot(x, y - radius) <= radius, np.zeros_like(x, bool)
  pole = (np.abs(x) <= max(0.08 * width, 1e-6)) & (y >= -0.01 * height) & (y <= 0.85 * height)
  head = np.hypot(x, y - 0.9 * height) <= max(0.4 * width, 0.04 * height)
  return pole | head, pole


def _paint_object(rng, placement: Placement, camera: Camera, light: float, u, v, image,
                  disparity, haze_depth, horizon_colour) -> None:
  """Paints one object (with its contact shadow) where it is nearer than what is there."""
  p = placement
  colours = (textures.natural_colour(rng), textures.natural_colour(rng))
  part_colours = ((textures.natural_colour(rng, hues=(0.05, 0.12), value=(2.0, 4.0)),) * 2
                  if p.kind == "tree" else
                  tuple(0.6 * c for c in colours))
  if p.kind == "tree":
    colours = (textures.natural_colour(rng, hues=(0.18, 0.4), value=(3.0, 4.0)),
               textures.natural_colour(rng, hues=(0.15, 0.4), value=(4.0, 3.0)))
  glossy = p.kind == "sphere" or rng.random() < 0.3
  lamp = p.kind == "post" and rng.random() < 0.6
  texture_rng, part_rng = textures.child(rng), textures.child(rng)
  # Bounding box of the object and its shadow, in pixels.
  reach_x, reach_y = 0.9 * p.width + 0.02 * p.height, 1.3 * p.height
  corners_r = np.array([p.r - reach_x, p.r + reach_x, p.r - reach_x, p.r + reach_x])
  corners_e = np.array([p.e + 0.1 * p.height] * 2 + [p.e - reach_y] * 2)
  cu, cv = camera.to_image(corners_r, corners_e)
  rows, cols = u.shape
  scale = float(max(rows, cols))
  i0, i1 = max(0, int(np.floor(cv.min() * scale)) - 1), min(rows, int(np.ceil(cv.max() * scale)) + 1)
  j0, j1 = max(0, int(np.floor(cu.min() * scale)) - 1), min(cols, int(np.ceil(cu.max() * scale)) + 1)
  if i0 >= i1 or j0 >= j1:
    return
  uu, vv = u[i0:i1, j0:j1], v[i0:i1, j0:j1]
  r, e = camera.to_horizon(uu, vv)
  x, y = r - p.r, p.e - e
  img, disp = image[i0:i1, j0:j1], disparity[i0:i1, j0:j1]
  # Contact shadow on the ground just around the base, offset away from the light.
  shadow = (((x + 0.3 * light * p.width) / (0.75 * p.width + 1e-6)) ** 2
            + (y / (0.06 * p.height + 1e-6)) ** 2) <= 1.0
  on_ground = shadow & (np.abs(disp - min(camera.gain * p.e, 1.0)) < 0.1)
  img[on_ground] *= 0.6
  mask, part = _object_shape(p.kind, x, y, p.height, p.width)
  d = np.full(x.shape, p.disparity, np.float32)
  if p.kind == "sphere":  # a bulge towards the camera
    radius = p.height / 2
    rho2 = np.clip((x ** 2 + (y - radius) ** 2) / max(radius ** 2, 1e-12), 0.0, 1.0)
    d = np.minimum(p.disparity * (1 + 0.05 * np.sqrt(1 - rho2)), 1.0)
  visible = mask & (d > disp)
  if not visible.any():
    return
  frame = (float(uu[visible].mean()), float(vv[visible].mean()), max(p.width, p.height) / 2)
  colour = textures.texture(texture_rng, uu[visible], vv[visible], frame=frame, colours=colours,
                            kind=0 if p.kind in ("tree", "dome") else None)
  second = part[visible]
  if second.any():
    colour[second] = textures.texture(part_rng, uu[visible][second], vv[visible][second],
                                      frame=frame, colours=part_colours, kind=0)
  xs, ys = x[visible], y[visible]
  if p.kind == "sphere":
    radius = p.height / 2
    nx, ny = xs / max(radius, 1e-9), (ys - radius) / max(radius, 1e-9)
    nz = np.sqrt(np.clip(1 - nx ** 2 - ny ** 2, 0.0, 1.0))
    direction = np.array([light, 0.7, 0.7]) / np.sqrt(light ** 2 + 0.98)
    shade = 0.3 + 0.7 * np.clip(nx * direction[0] + ny * direction[1] + nz * direction[2], 0, 1)
  else:
    across = np.clip(xs / max(p.width / 2, 1e-9), -1.5, 1.5)
    shade = np.clip(0.85 + 0.25 * light * across + 0.1 * ys / max(p.height, 1e-9), 0.4, 1.2)
    if p.kind == "block":
      shade = np.where(second, shade * (0.55 if light < 0 else 0.8), shade)
  colour *= shade[..., None].astype(np.float32)
  if glossy or lamp:  # a specular highlight (or the lamp): a small saturated spot
    if lamp:
      sx, sy, radius = 0.0, 0.9 * p.height, max(0.4 * p.width, 0.04 * p.height)
    else:
      sx = 0.45 * light * p.width / 2
      sy = 0.75 * p.height
      radius = 0.08 * max(p.width, p.height)
    radius = max(radius, 0.6 / scale)  # at least about a pixel
    spot = np.hypot(xs - sx, ys - sy) <= radius
    colour[spot] = 1.0 - rng.uniform(0.0, 0.15, size=3).astype(np.float32) * (rng.random() < 0.5)
  colour = _haze(colour, 1.0 / max(p.e, 1e-4), haze_depth, horizon_colour)
  img[visible] = colour
  disp[visible] = d[visible]
