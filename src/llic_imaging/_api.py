"""Public functions: join planes, codec engine and container (the only module that knows all three).

Contract (names are fixed; other tools build on them):

- ``encode(data, /, level=None, *, model=None, tile=None, numthreads=None, device=None,
  metadata=None) -> bytes`` -- ``data`` is a uint8/int8/uint16/int16 array, (H, W) or (N, H, W);
  ``metadata`` is optional ``bytes`` stored verbatim in the container's metadata block (format
  adapters put their JSON/bytes there).
- ``decode(data, /, index=None, *, numthreads=None, device=None) -> np.ndarray`` -- ``index``
  selects one plane (slice/band) of a stack and decodes only that plane's chunks.
- ``info(data, /) -> StreamInfo`` -- header only, no model load; ``.to_dict()`` is JSON-able
  (shape, dtype, bits_per_sample, planes, chunk_count, tile, model, model_sha256,
  compressed_bytes, ...).
- ``metadata(data, /) -> bytes`` -- the metadata block (empty bytes if none).
- ``check(data, /) -> bool`` -- magic bytes only; never raises.
- ``rate_map(array, /, **options) -> np.ndarray`` -- float32 bits per sample, same shape.
- ``version() -> str``.
"""
