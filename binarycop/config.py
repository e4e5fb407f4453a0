"""The YAML config: typed, validated (unknown keys rejected), secrets from ``${VAR}`` (see config_problems)."""

from __future__ import annotations

import codecs
import ipaddress
import math
import os
import re
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from binarycop.config_problems import substitute, validation_problems
from binarycop.strict_yaml import YamlRefused, load_yaml
from detector.zones import self_intersecting
from names import NAME_PATTERN

# Limits on what a config file may hold (a real one is a few KiB, nested 6 deep, zones of a few points).
MAX_CONFIG_BYTES = 1024 * 1024
MAX_ZONES = 32
_HOST_NAME = re.compile(r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?)+")
MAX_ZONE_POINTS = 256
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CAMERA_SCHEMES = ("rtsp", "rtsps", "http", "https", "file")


class ConfigError(ValueError):
    """A config that cannot be used; ``problems`` lists each as 'field.path: what is wrong'."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


def redact_url(url: str) -> str:
    """The URL with its credentials replaced: ``user:***@`` for user and password, ``***@`` for a
    lone user-info part (often a token). A password holding an unencoded ``/``, ``?`` or ``#`` (which end the
    host part) hides everything up to the last ``@``, whatever it holds."""
    scheme, separator, rest = url.partition("://")
    if not separator or "@" not in rest:
        return url
    authority = rest[: _authority_end(rest)]
    if "@" not in authority:
        return f"{scheme}://***@{rest[rest.rindex('@') + 1 :]}"
    user_info, _, host = authority.rpartition("@")
    user, colon, _ = user_info.partition(":")
    shown = f"{user}:***@" if colon and user else "***@"
    return f"{scheme}://{shown}{host}{rest[len(authority) :]}"


def _authority_end(rest: str) -> int:
    """Where the user-info and host part of ``rest`` (a URL after ``://``) ends: at the first ``/``, ``?`` or ``#``."""
    ends = [index for index in (rest.find(mark) for mark in "/?#") if index >= 0]
    return min(ends, default=len(rest))


def check_url(url: str, schemes: tuple[str, ...]) -> str:
    """Refuse what no camera or Redis URL holds, without echoing the URL (it may hold a password)."""
    if not url.strip():
        raise ValueError("must not be empty")
    if _CONTROL.search(url):
        raise ValueError("holds control characters (newline, tab, ESC, ...); remove them")
    scheme, separator, rest = url.partition("://")
    if not separator:
        return url
    if scheme.lower() not in schemes:
        shown = repr(scheme) if re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]{0,15}", scheme) else "before '://'"
        raise ValueError(f"unsupported scheme {shown}; expected one of {', '.join(s + '://' for s in schemes)}")
    if "@" in rest and "@" not in rest[: _authority_end(rest)]:
        raise ValueError(
            "the user name or password holds '/', '?' or '#', which end the host part: percent-encode them "
            "(%2F, %3F, %23; an '@' in the path as %40)"
        )
    try:
        _ = urlsplit(url).port  # raises for a port that is not a number
    except ValueError:
        raise ValueError(f"the port in {redact_url(url)} is not a number from 0 to 65535") from None
    return url


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RedisTlsConfig(Strict):
    ca_file: Path | None = Field(None, description="CA certificate(s) to verify the server with (PEM)")
    cert_file: Path | None = Field(None, description="client certificate for mutual TLS (PEM)")
    key_file: Path | None = Field(None, description="the client certificate's private key (PEM)")
    check_hostname: bool = Field(True, description="the server certificate must name the host in the URL")

    @model_validator(mode="after")
    def _pair(self) -> RedisTlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class RedisConfig(Strict):
    url: str | None = Field(
        None, description="redis:// or rediss:// (TLS) URL; absent or empty: an embedded Redis is started", repr=False
    )
    password: str | None = Field(
        None, description="password (AUTH); better from the environment: '${REDIS_PASSWORD}'", repr=False
    )
    username: str | None = Field(None, description="ACL user name (Redis 6+); absent: the default user")
    tls: RedisTlsConfig | None = Field(None, description="TLS settings; needs a rediss:// URL")

    @field_validator("url")
    @classmethod
    def _scheme(cls, url: str | None) -> str | None:
        if url and urlsplit(url).scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return check_url(url, ("redis", "rediss", "unix")) if url else None

    @model_validator(mode="after")
    def _tls_needs_rediss(self) -> RedisConfig:
        if self.tls is not None and self.url and urlsplit(self.url).scheme != "rediss":
            raise ValueError("tls settings need a rediss:// url")
        return self


def redis_client(config: RedisConfig, url: str | None = None, timeout: float = 5):
    """An asyncio Redis client for ``url`` (default: the configured one) with the password and TLS settings."""
    import redis.asyncio as aioredis

    options: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    if config.password:
        options["password"] = config.password
    if config.username:
        options["username"] = config.username
    if config.tls is not None:
        tls = config.tls
        options["ssl_check_hostname"] = tls.check_hostname
        if tls.ca_file:
            options["ssl_ca_certs"] = str(tls.ca_file)
        if tls.cert_file:
            options["ssl_certfile"] = str(tls.cert_file)
            options["ssl_keyfile"] = str(tls.key_file)
    return aioredis.from_url(url or config.url, **options)


class HttpConfig(Strict):
    bind: str = Field("127.0.0.1", description="address the status page, /metrics and probes listen on")
    port: int = Field(8080, ge=0, le=65535, description="TCP port; 0 picks a free one")
    metrics: Literal["all", "local"] = Field(
        "all",
        description="all: /metrics serves every count in Redis (one process alone); local: only this process's "
        "own gauges (counts pending, Redis up) when a separate `binarycop exporter` serves the counts",
    )
    preview: bool = Field(
        False,
        description="serve the setup view: a recent frame of each camera with face boxes, classes and zones, every "
        "face the detector finds (any size, lower scores too) or tracks pixelated before the picture leaves the "
        "process (a missed face is not)",
    )
    preview_bind: str = Field("127.0.0.1", description="address the setup view listens on (loopback: this machine)")
    preview_port: int = Field(8081, ge=0, le=65535, description="the setup view's TCP port; 0 picks a free one")

    @field_validator("bind", "preview_bind")
    @classmethod
    def _address(cls, bind: str) -> str:
        """An IP address or a host name; a dotted number that is no address (999.1.1.1) is refused now, not at
        the start."""
        try:
            ipaddress.ip_address(bind)
            return bind
        except ValueError:
            pass
        labels = bind.rstrip(".").split(".")
        if not _HOST_NAME.fullmatch(bind) or labels[-1].isdigit():
            raise ValueError(f"{bind!r} is not an IP address or a host name")
        return bind


class ClassifierConfig(Strict):
    backend: Literal["cpu", "onnx", "torch", "finn"] = Field(
        "cpu",
        description="cpu: bit-exact XNOR engine; onnx: a network's FP32 twin on onnxruntime (model: n-cnv-fp32); "
        "torch: brevitas reference; finn: FPGA accelerator (PYNQ board)",
    )
    model: str = Field(
        "n-cnv",
        description="shipped model name (cnv, n-cnv, u-cnv; backend onnx: n-cnv-fp32, cnv-fp32) or a .npz/.onnx path",
    )
    bitfile: str | None = Field(
        None, description="finn backend: the accelerator's .bit built by FINN (its .hwh beside it)"
    )
    max_batch: int = Field(256, ge=1, le=4096, description="most crops classified in one call")
    max_wait_ms: float = Field(20, ge=0, le=1000, description="longest a crop waits for a batch to fill")

    @model_validator(mode="after")
    def _bitfile_for_finn(self) -> ClassifierConfig:
        if self.backend == "finn" and not self.bitfile:
            raise ValueError("backend finn needs bitfile: the accelerator's .bit built by FINN")
        if self.backend != "finn" and self.bitfile:
            raise ValueError(f"bitfile is only used by backend finn, not {self.backend}")
        if self.backend == "onnx" and (self.model in ("cnv", "n-cnv", "u-cnv") or self.model.endswith(".npz")):
            raise ValueError(
                f"backend onnx runs a network's FP32 twin, not the binary model {self.model!r}: "
                "model: n-cnv-fp32 (models/n-cnv-fp32.onnx) or cnv-fp32"
            )
        return self


def _tile_size(tile: object) -> object:
    if tile is False:  # YAML 1.1 reads a bare `off` as false
        return "off"
    if tile is True:
        raise ValueError("use 'auto', 'off' or a tile side in pixels")
    if isinstance(tile, int) and not 128 <= tile <= 4096:
        raise ValueError("tile side must be between 128 and 4096 pixels")
    return tile


def _scales(scales: list[float] | None) -> list[float] | None:
    if scales is not None and any(not 0.25 <= scale <= 4 for scale in scales):
        raise ValueError("scales must be factors between 0.25 and 4")
    return scales


_TILE_HELP = (
    "tile side in pixels for large frames, 'auto' or 'off'; yunet: auto is off (whole frames, scaled to the faces in "
    "view), a side cuts frames into tiles examined at full size where they changed, the whole frame at half size; "
    "blazeface: auto cuts frames longer than 960 px into square tiles of their shorter side"
)
_TILES_PER_FRAME_HELP = (
    "tiles examined per detect frame besides the whole frame (unconfirmed faces' tiles first, then the longest "
    "unvisited, changed ones first); faces in tiles not examined are held by the tracker; 0: every tile every frame"
)
_KIND_HELP = (
    "face detector: 'yunet' (YuNet on onnxruntime, the default) or 'blazeface' (BlazeFace full range: cheaper per "
    "run, finds fewer masked faces; docs/detectors.md compares them); 'yuface', YuNet's former runtime, is read as "
    "'yunet'"
)
_SCALES_HELP = (
    "yunet only: image scales examined, merged (1: as it is; 2: upscaled twice, for faces too small at 1, at the "
    "cost of a larger image); frames examined in tiles use the tiles at scale 1"
)
_KEEP_STILL_HELP = (
    "detection follows motion: a frame, tile or region with no motion since its last examination keeps the faces "
    "found there (re-cut and re-classified from the new frame) instead of running the detector again; every "
    "region is examined at least every 25 frames"
)
_FULL_EVERY_HELP = (
    "yunet without tiles: every this many detect frames the frame is examined at full resolution; between those, at "
    "the lowest scale that still sees the smallest face in view (faces too small for it wait for the next full "
    "frame: at most this many frames late); 1: every frame at full resolution"
)
_BACKOFF_HELP = (
    "yunet without tiles: while full-resolution frames find no face too small for the reduced scale, the interval "
    "between them doubles, up to 25 frames (5 s at 5 fps); one that finds such a face brings it back to "
    "full_frame_every. false: a full-resolution frame every full_frame_every frames, whatever they find"
)
DetectorKind = Literal["yunet", "blazeface"]


def _kind(kind: object) -> object:
    return "yunet" if kind == "yuface" else kind  # configs written for the libfacedetection wheel keep working


class DetectorConfig(Strict):
    kind: DetectorKind = Field("yunet", description=_KIND_HELP)
    scales: list[float] = Field([1.0], min_length=1, max_length=4, description=_SCALES_HELP)
    min_face_px: int = Field(24, ge=8, le=1024, description="smaller faces are ignored")
    min_score: float = Field(0.5, gt=0, lt=1, description="detector confidence threshold")
    tile: Literal["auto", "off"] | int = Field("auto", description=_TILE_HELP)
    tiles_per_frame: int = Field(0, ge=0, le=1024, description=_TILES_PER_FRAME_HELP)
    keep_still: bool = Field(True, description=_KEEP_STILL_HELP)
    full_frame_every: int = Field(5, ge=1, le=100, description=_FULL_EVERY_HELP)
    full_frame_backoff: bool = Field(True, description=_BACKOFF_HELP)

    tile_in_range = field_validator("tile", mode="before")(_tile_size)
    scales_in_range = field_validator("scales")(_scales)
    kind_renamed = field_validator("kind", mode="before")(_kind)

    def tile_pixels(self) -> int | None:
        return None if self.tile == "auto" else 0 if self.tile == "off" else int(self.tile)


class CameraDetectorConfig(Strict):
    """Per-camera detector settings; each one left out takes the top-level ``detector`` value."""

    kind: DetectorKind | None = Field(None, description=_KIND_HELP)
    scales: list[float] | None = Field(None, min_length=1, max_length=4, description=_SCALES_HELP)
    min_face_px: int | None = Field(None, ge=8, le=1024, description="smaller faces are ignored")
    min_score: float | None = Field(None, gt=0, lt=1, description="detector confidence threshold")
    tile: Literal["auto", "off"] | int | None = Field(None, description=_TILE_HELP)
    tiles_per_frame: int | None = Field(None, ge=0, le=1024, description=_TILES_PER_FRAME_HELP)
    keep_still: bool | None = Field(None, description=_KEEP_STILL_HELP)
    full_frame_every: int | None = Field(None, ge=1, le=100, description=_FULL_EVERY_HELP)
    full_frame_backoff: bool | None = Field(None, description=_BACKOFF_HELP)

    tile_in_range = field_validator("tile", mode="before")(_tile_size)
    scales_in_range = field_validator("scales")(_scales)
    kind_renamed = field_validator("kind", mode="before")(_kind)


class CameraConfig(Strict):
    name: str = Field(pattern=NAME_PATTERN, description="metric label; lowercase letters, digits, - and _")
    url: str = Field(
        repr=False,
        description="rtsp://, http(s)://, usb:N, /dev/videoN or a video file; credentials are redacted when shown",
    )
    detect_fps: float = Field(5, gt=0, le=60, description="frames per second sent to the detector")
    site: str | None = Field(None, pattern=NAME_PATTERN, description="optional site label for grouping")
    loop: bool = Field(
        False, description="files only: true starts again at the end; false reads it once, then says file_ended"
    )
    realtime: bool = Field(True, description="files only: read at the clip's own pace (false: as fast as possible)")
    zones: dict[str, Annotated[list[tuple[float, float]], Field(max_length=MAX_ZONE_POINTS)]] | None = Field(
        None,
        max_length=MAX_ZONES,
        description=f"named polygons in relative coordinates (0..1), at most {MAX_ZONES} of at most "
        f"{MAX_ZONE_POINTS} points; counts carry the zone of each face",
    )
    detector: CameraDetectorConfig | None = Field(
        None,
        description="this camera's detector settings (kind, scales, tile, tiles_per_frame, keep_still, "
        "full_frame_every, full_frame_backoff, min_face_px, min_score)",
    )
    stall_seconds: float = Field(10, gt=0, le=300, description="streams: no frame for this long is a stall; reconnect")
    reconnect_max_seconds: float = Field(30, gt=0, le=3600, description="streams: longest wait between reconnects")
    max_frame_pixels: int = Field(
        4096 * 2160,
        ge=64 * 64,
        le=100_000_000,
        description="a frame declaring more pixels (width x height) is refused before it is decoded and counted as "
        "failed; default 4K (4096x2160)",
    )

    @property
    def display_url(self) -> str:
        return redact_url(self.url)

    def detector_config(self, default: DetectorConfig) -> DetectorConfig:
        """The top-level detector settings with this camera's own on top."""
        if self.detector is None:
            return default
        return default.model_copy(update=self.detector.model_dump(exclude_none=True))

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        return check_url(url, _CAMERA_SCHEMES)  # a malformed usb:N is the source's error (ingest.open_source)

    @field_validator("zones")
    @classmethod
    def _zones(cls, zones: dict[str, list[tuple[float, float]]] | None):
        for name, points in (zones or {}).items():
            if not re.fullmatch(NAME_PATTERN, name) or name in ("all", "outside"):
                raise ValueError(f"zone name {name!r}: lowercase letters, digits, - and _; not 'all' or 'outside'")
            if len(points) < 3:
                raise ValueError(f"zone {name!r} needs at least 3 points")
            if any(not (0 <= x <= 1 and 0 <= y <= 1) for x, y in points):
                raise ValueError(f"zone {name!r}: coordinates are relative, between 0 and 1")
            if self_intersecting(points):
                raise ValueError(f"zone {name!r}: its edges cross (a bow-tie); list the corners in order around it")
        return zones


class TrackingConfig(Strict):
    min_hits: int = Field(3, ge=1, le=100, description="frames a face must be seen before it counts as a person")
    lost_after_seconds: float = Field(1.0, gt=0, le=60, description="a face unseen this long has left")
    decide_after_seconds: float = Field(
        60,
        ge=1,
        le=3600,
        description="a person is counted once, with the class most of their frames show, when they leave or after "
        "this long in view, whichever comes first: someone who stays all day still counts within a minute, in the "
        "5-minute window the page and the alerts read",
    )


MAX_PROCESSES = 64


def usable_cores() -> int:
    """Cores this process may use: those it may run on (its CPU affinity: taskset, a cpuset), fewer where its cgroup
    caps its CPU time (a container's ``--cpus``, a Kubernetes CPU limit), rounded up; else the machine's."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    return max(1, min(cores, math.ceil(quota))) if quota is not None else cores


def _cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The cores' worth of CPU time this process's cgroup may use (cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``
    over ``cpu.cfs_period_us``); None when unlimited or unknown."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


class IngesterConfig(Strict):
    lease_seconds: float = Field(
        15, ge=1, le=600, description="camera lease time: a dead ingester's cameras move to others after this long"
    )
    stop_wait_seconds: float = Field(
        10,
        ge=0,
        le=300,
        description="at a stop, how long to wait for Redis to take the pending counts before keeping them in the spool",
    )
    spool_dir: Path | None = Field(
        None,
        description="where counts Redis did not take at a stop are kept until the next start replays them; "
        "default: $XDG_DATA_HOME/binarycop/spool (~/.local/share/binarycop/spool)",
    )
    processes: Literal["auto"] | Annotated[int, Field(ge=1, le=MAX_PROCESSES)] = Field(
        "auto",
        description="ingester processes this server runs, sharing its cameras through the leases (one Python "
        "process alone serialises the cameras' work on its interpreter lock); auto: one per core this process may "
        "use, never more than the cameras; 1: this process alone. Read at start (a reload does not change it)",
    )

    @field_validator("processes", mode="before")
    @classmethod
    def _processes_in_range(cls, processes: object) -> object:
        if isinstance(processes, bool) or (isinstance(processes, int) and not 1 <= processes <= MAX_PROCESSES):
            raise ValueError(f"expected 'auto' or a count from 1 to {MAX_PROCESSES}")
        return processes

    def process_count(self, cameras: int) -> int:
        """The processes to run for ``cameras`` configured cameras (``auto`` resolved on this machine)."""
        if self.processes != "auto":
            return int(self.processes)
        return max(1, min(usable_cores(), cameras, MAX_PROCESSES))


class Config(Strict):
    redis: RedisConfig = Field(default_factory=RedisConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    classifier: ClassifierConfig = Field(default_factory=ClassifierConfig)
    detector: DetectorConfig = Field(default_factory=DetectorConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    ingester: IngesterConfig = Field(default_factory=IngesterConfig)
    cameras: list[CameraConfig] = Field(min_length=1, description="the cameras this server reads")

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        counts = Counter(camera.name for camera in self.cameras)  # linear: 40,000 cameras took minutes with count()
        duplicates = sorted(name for name, count in counts.items() if count > 1)
        if duplicates:
            raise ValueError(f"camera names must be unique; repeated: {', '.join(duplicates)}")
        return self


def detector_spec(text: str) -> DetectorConfig:
    """``KIND[@SCALES][:SETTING=VALUE,...]`` (``yunet``, ``blazeface``, ``yunet@1,2``, ``yunet:keep_still=false``: how
    the offline commands name a detector) as the server's default detector settings of that kind with those changed;
    :func:`detector_name` writes it back."""
    head, _, settings = text.partition(":")
    kind, _, scales = head.partition("@")
    fields: dict = {"kind": _kind(kind)}
    if scales:
        if fields["kind"] != "yunet":
            raise ConfigError("--detector", [f"{text!r}: only yunet takes scales"])
        try:
            fields["scales"] = [float(scale) for scale in scales.split(",")]
        except ValueError:
            raise ConfigError("--detector", [f"{text!r}: scales are comma-separated numbers, e.g. yunet@1,2"]) from None
    for setting in settings.split(",") if settings else []:
        key, equals, value = setting.partition("=")
        if not equals or key not in _DETECTOR_SETTINGS:
            raise ConfigError(
                "--detector", [f"{text!r}: after ':' come SETTING=VALUE pairs of {', '.join(_DETECTOR_SETTINGS)}"]
            )
        fields[key] = _setting_value(value)
    try:
        return DetectorConfig(**fields)
    except ValidationError as error:
        raise ConfigError(f"--detector {text!r}", validation_problems(error)) from None


_DETECTOR_SETTINGS = (
    "min_face_px",
    "min_score",
    "tile",
    "tiles_per_frame",
    "keep_still",
    "full_frame_every",
    "full_frame_backoff",
)


def _setting_value(text: str):
    """A setting's value as YAML would read it: true/false, a whole number, a number, or the word."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def detector_name(config: DetectorConfig) -> str:
    """``blazeface`` or ``yunet@1,2`` (the scales matter to yunet only), with ``:SETTING=VALUE`` for each setting
    that differs from the default."""
    name = "yunet@" + ",".join(f"{scale:g}" for scale in config.scales) if config.kind == "yunet" else config.kind
    default = DetectorConfig(kind=config.kind)
    changed = [
        f"{key}={str(value).lower() if isinstance(value, bool) else value}"
        for key in _DETECTOR_SETTINGS
        if (value := getattr(config, key)) != getattr(default, key)
    ]
    return name + (":" + ",".join(changed) if changed else "")


def parse_config(text: str, source: str = "<config>", environ: dict[str, str] | None = None) -> Config:
    """Parse YAML text into a :class:`Config`, raising :class:`ConfigError` with every problem."""
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(source, [f"(file): larger than {MAX_CONFIG_BYTES // 1024} KiB; a config is a few KiB"])
    try:
        raw = load_yaml(text)
    except YamlRefused as error:
        raise ConfigError(source, [str(error)]) from None
    if not isinstance(raw, dict):
        raise ConfigError(source, ["(top level): expected a mapping with at least 'cameras'"])
    problems: list[str] = []
    raw = substitute(raw, dict(os.environ if environ is None else environ), problems)
    try:
        config = Config.model_validate(raw)
    except ValidationError as error:
        substituted = {problem.split(": ", 1)[0] for problem in problems}  # a field already said wrong once
        problems += [p for p in validation_problems(error, raw=raw) if p.split(": ", 1)[0] not in substituted]
        config = None
    if problems:
        raise ConfigError(source, problems)
    return config


def read_config_text(path: Path) -> str:
    """The file's text, refusing what is too large or not UTF-8 (with a line saying what it is)."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_CONFIG_BYTES + 1)
    except OSError as error:
        raise ConfigError(str(path), [f"cannot read: {error.strerror or error}"]) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(str(path), [f"(file): larger than {MAX_CONFIG_BYTES // 1024} KiB; a config is a few KiB"])
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in data:
        raise ConfigError(str(path), ["(file): UTF-16 (or binary) text; save it as UTF-8"])
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ConfigError(
            str(path),
            [f"(file): not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start}); save it as UTF-8"],
        ) from None


def load_config(path: str | Path, environ: dict[str, str] | None = None) -> Config:
    path = Path(path)
    return parse_config(read_config_text(path), str(path), environ)


def config_schema() -> dict:
    return Config.model_json_schema()
