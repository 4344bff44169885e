"""array-api-strict: the reference implementation of the standard, CPU only. It rejects everything the
standard leaves out, and its second device ``device1`` catches arrays made without ``device=``."""

from __future__ import annotations

import array_api_compat

from .protocol import Backend


class ArrayApiStrict(Backend):
    NAME = "array-api-strict"
    KINDS = ("cpu",)

    def missing(self) -> str | None:
        try:
            import array_api_strict  # noqa: F401
        except ImportError as exc:
            return f"array-api-strict is not installed ({exc}). Fix: pip install array-api-strict"
        return None

    def cuda_status(self) -> tuple[int, str]:
        return 0, "array-api-strict runs on the CPU only"

    def namespace(self):
        import array_api_strict as xp

        # 2024.12 is the first version with scalars in maximum/where and take_along_axis.
        if xp.get_array_api_strict_flags()["api_version"] < "2024.12":
            xp.set_array_api_strict_flags(api_version="2024.12")
        return xp

    def native(self, kind: str, index: int, xp):
        return xp.__array_namespace_info__().default_device()

    def owns(self, xp) -> bool:
        return array_api_compat.is_array_api_strict_namespace(xp)

    def locate(self, x, native) -> tuple[str, int, str]:
        import array_api_strict as xp

        default = xp.__array_namespace_info__().default_device()
        # Its devices print as Device('device1'): keep the name, which tells them apart.
        return "cpu", 0, "" if native == default else repr(native).split("'")[1]

    def status(self) -> str:
        try:
            import array_api_strict
        except ImportError:
            return "not installed"
        return f"ok (array-api-strict {array_api_strict.__version__})"


BACKEND = ArrayApiStrict()
