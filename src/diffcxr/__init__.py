"""diffcxr: report-to-chest-X-ray generation with a disease-knowledge enhanced latent diffusion model (Diff-CXR)."""

__version__ = "0.1.0"

from diffcxr.errors import DiffCXRError  # noqa: E402

__all__ = ["DiffCXRError", "__version__"]
