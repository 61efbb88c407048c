"""Builds capgym's compiled modules: the simulator's core (``envs/world/_core.pyx``) and the
linearizability checker's search (``metrics/_wgl.pyx``).

Everything else is in ``pyproject.toml``. The build is optional: without Cython or a C compiler
the install still succeeds; ``envs.world.sim`` runs the same core in pure Python
(``envs/world/_pycore.py``) and ``metrics.linearizability`` its Python search, both slower.
"""

from setuptools import setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """Build the core if the machine can; otherwise say so and go on with the pure-Python core."""

    def run(self):
        try:
            super().run()
        except Exception as e:  # no compiler, no headers
            print(f"capgym: the compiled core was not built ({e}); using the pure-Python core")

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as e:
            print(f"capgym: the compiled core was not built ({e}); using the pure-Python core")


def extensions():
    try:
        from Cython.Build import cythonize
    except ImportError:
        print("capgym: Cython is not installed; using the pure-Python core")
        return []
    return cythonize(["envs/world/_core.pyx", "metrics/_wgl.pyx"], language_level=3, quiet=True)


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
