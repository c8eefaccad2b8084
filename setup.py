"""Build the Cython hot paths: ext/<name>.pyx -> vstore._ext.<name>.

Only the extension list lives here; all metadata is in pyproject.toml.
"""

from Cython.Build import cythonize
from setuptools import Extension, setup

NAMES = ["nal", "ptable", "keycodec", "tsdemux", "cliptab"]

extensions = [
    Extension(f"vstore._ext.{name}", [f"ext/{name}.pyx"], extra_compile_args=["-O3"])
    for name in NAMES
]

setup(
    ext_modules=cythonize(
        extensions,
        include_path=["ext"],
        build_dir="build/cython",
        compiler_directives={
            "language_level": 3,
            "embedsignature": True,
            "freethreading_compatible": True,
        },
    )
)
