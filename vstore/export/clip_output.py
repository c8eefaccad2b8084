"""A clip's output file: written beside its target under a temporary name and put in place
only once whole, so that a clip that fails (a full disk, damaged footage, a reader gone)
leaves no half-written file and keeps the file it was to replace."""

import os
import stat
from pathlib import Path

from vstore.base.fsutil import translate_oserror


class ClipOutput:
    """The file a clip to ``target`` is written into (``path``); ``commit()`` when whole,
    else ``abort()``.

    A regular target (or none) is written as ``.NAME.PID-RANDOM.part`` in its directory and
    renamed into place. The target is unlinked just before that rename rather than renamed
    over: ext4 treats a rename over a file as a rewrite in place (``auto_da_alloc``) and
    starts the new file's writeback there and then, which cost as much as writing a clip
    did. A symlink, a file with other hard links, or a file that is not regular (a FIFO, a
    device) is written through in place, since replacing it would cut the link; so is any
    target in a directory this process may not create files in."""

    def __init__(self, target: str | os.PathLike[str]) -> None:
        self.name = os.fspath(target)  # as the user gave it, for messages
        self.target = Path(target)
        self.existed = False
        self.in_place = True
        try:
            st = self.target.lstat()
            self.existed = True
            self.in_place = not (stat.S_ISREG(st.st_mode) and st.st_nlink == 1)
        except FileNotFoundError:
            self.in_place = False
        except OSError:
            pass  # (the open says what is wrong)
        self.path = self.target
        self._fd = -1
        if not self.in_place:
            name = f".{self.target.name}.{os.getpid()}-{os.urandom(4).hex()}.part"
            staged = self.target.with_name(name)
            try:
                # Created here (O_EXCL) so that nothing else's file is ever written or removed.
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
                self._fd = os.open(staged, flags, 0o644)
                self.path = staged
            except OSError:
                self.in_place = True  # a directory we may not add to: the target itself

    def open_fd(self) -> int:
        """A descriptor to write the clip with (the caller closes it): the staged file as it
        was created, never truncated (on ext4 a truncate to nothing, even of an empty file,
        makes its close start writeback: the cost this class avoids), or the target
        itself, truncated. A failure is a vstore error naming the target (what was staged
        is removed)."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            return fd
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
        try:
            return os.open(self.path, flags, 0o644)
        except OSError as exc:
            self.abort()
            raise translate_oserror(exc, f"cannot write the clip to {self.name}") from exc

    def name_for_creating(self) -> str:
        """The path, for a writer that opens it by name itself (FFmpeg's own file I/O): the
        staged name is freed first, so that the writer creates the file rather than
        truncating it."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            if self.path != self.target:
                self.path.unlink(missing_ok=True)
        return str(self.path)

    def commit(self) -> None:
        """Put the whole clip in place; a failure is a vstore error naming the target (what
        was staged is removed)."""
        if self.path == self.target:
            return
        try:
            if self.existed:
                self.target.unlink(missing_ok=True)
            os.rename(self.path, self.target)
        except OSError as exc:
            self.abort()
            raise translate_oserror(exc, f"putting the clip in place at {self.name}") from exc

    def abort(self) -> None:
        """The clip failed: remove what it wrote, unless that is the target written in place
        and there before (it cannot be given back)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self.path != self.target or not self.existed:
            try:
                if stat.S_ISREG(self.path.lstat().st_mode):
                    self.path.unlink()
            except OSError:
                pass
