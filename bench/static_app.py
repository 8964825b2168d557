"""bench/tracking.py's baseline: the open pixel's 43 bytes and headers from a bare WSGI app,
no Django, served by gunicorn with the production config (espsite/gunicorn.conf.py):

    gunicorn -c espsite/gunicorn.conf.py bench.static_app:application

Every path answers the GIF: what the tracking endpoints cost is measured against the
server set-up alone.
"""

# The same bytes as tracking.endpoints.PIXEL (the bench checks that both answer alike).
PIXEL = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00"
    b"\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
HEADERS = [
    ("Content-Type", "image/gif"),
    ("Cache-Control", "no-store, no-cache, must-revalidate, private"),
    ("Pragma", "no-cache"),
    ("Expires", "0"),
    ("Content-Length", str(len(PIXEL))),
]


def application(environ, start_response):
    start_response("200 OK", HEADERS)
    return [PIXEL]
