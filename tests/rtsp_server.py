"""A real RTSP camera for tests: JPEG frames as RTP/MJPEG from gst-rtsp-server.

Run by the system Python (Debian's python3-gi, gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-good,
gstreamer1.0-plugins-bad for imagesequencesrc):
    /usr/bin/python3 tests/rtsp_server.py PORT FRAME_DIR [USER:PASSWORD]
serves rtsp://127.0.0.1:PORT/cam: FRAME_DIR/frame00000.jpg ... once, paced at 10 fps like a camera (with
USER:PASSWORD, to that user only: others get 401; any other path is 404)
(imagesequencesrc timestamps the frames and clocksync holds each until its time; a plain multifilesrc
sends them as fast as the client reads).
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> None:
    port, frames = sys.argv[1], sys.argv[2]
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f"( imagesequencesrc location={frames}/frame%05d.jpg framerate=10/1 "
        "! jpegparse ! clocksync ! rtpjpegpay name=pay0 pt=26 )"
    )
    factory.set_shared(True)
    if len(sys.argv) > 3:
        _require_login(server, factory, *sys.argv[3].split(":", 1))
    server.get_mount_points().add_factory("/cam", factory)
    server.attach(None)
    print("ready", flush=True)
    GLib.MainLoop().run()


def _require_login(server, factory, user: str, password: str) -> None:
    """Basic authentication: only ``user`` with ``password`` may read the stream (RTSP 401 for anyone else)."""
    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken()
    token.set_string("media.factory.role", "viewer")
    auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
    server.set_auth(auth)
    permissions = GstRtspServer.RTSPPermissions()
    permissions.add_role_from_structure(Gst.Structure.new_empty("viewer"))
    permissions.add_permission_for_role("viewer", "media.factory.access", True)
    permissions.add_permission_for_role("viewer", "media.factory.construct", True)
    factory.set_permissions(permissions)


if __name__ == "__main__":
    main()
