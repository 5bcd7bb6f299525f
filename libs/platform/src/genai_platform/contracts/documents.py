"""How large a document may be: one set of figures for every service that handles an upload.

Ingestion refuses a larger document (`INGESTION_MAX_BYTES`, 413), the gateway a larger upload
body (`GATEWAY_MAX_UPLOAD_BODY_BYTES`: the document and its multipart framing, 413), and the
ui's Documents page a larger file before sending it (`UI_MAX_UPLOAD_BYTES`). Each setting
defaults to these figures, so they agree unless an operator changes one of them; every
sidecar's `maxBodySize` (16Mi in dapr.yaml) is above them all.
"""

# The largest document, in bytes: 10 MiB.
MAX_DOCUMENT_BYTES = 10 << 20
# Room for the multipart framing of one file and a few form fields around a document.
MULTIPART_FRAMING_BYTES = 64 << 10
# The largest upload body the gateway lets through, in bytes: a document and its framing.
MAX_UPLOAD_BODY_BYTES = MAX_DOCUMENT_BYTES + MULTIPART_FRAMING_BYTES
# A collection's name: letters, digits, `.`, `_` and `-`, 1 to 100 of them. Unanchored, and a valid
# HTML `pattern` too (`-` escaped: browsers compile a pattern with the `v` flag and ignore an
# invalid one), so the ui's collection fields hint what ingestion takes.
COLLECTION_PATTERN = r"[A-Za-z0-9._\-]{1,100}"
