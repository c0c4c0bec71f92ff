#!/usr/bin/env python3
"""POSIX conformance checks for a writable file system, modelled on pjdfstest's areas (our own subset, not pjdfstest).

Usage: posix-conformance.py DIR
Runs every check in a fresh directory under DIR and prints one "<check>\t<result>" line per check. A result is the
outcome of the check's system calls ("ok" or the errno name) and what stat/readlink/read then show, written so that
it depends only on the file system's semantics: no inode or device numbers, no block counts, no directory sizes, no
clock readings (only "did it change" or values set explicitly). Run it on a reference file system (the oracle, e.g.
tmpfs) and on the one under test; any difference in the output is a difference in behaviour.

Must run as root: the checks marked "as user" fork a child that drops to uid/gid 65534 (no supplementary groups),
for the EACCES/EPERM cases.
"""
import ctypes
import errno
import os
import stat
import sys
import time

NOBODY = 65534
AT_FDCWD = -100
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
_libc = ctypes.CDLL(None, use_errno=True)


def err(fn, *args, **kwargs):
    """Calls fn; "ok" (or what it returned, if a string) or the errno's name."""
    try:
        r = fn(*args, **kwargs)
        return r if isinstance(r, str) else "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))


def outcomes(cases):
    """"name=outcome" of each (name, call) pair, in order."""
    return " ".join(f"{name}={err(fn)}" for name, fn in cases)


def kind(mode):
    for test, letter in ((stat.S_ISREG, "f"), (stat.S_ISDIR, "d"), (stat.S_ISLNK, "l"), (stat.S_ISFIFO, "p"),
                         (stat.S_ISCHR, "c"), (stat.S_ISBLK, "b"), (stat.S_ISSOCK, "s")):
        if test(mode):
            return letter
    return "?"


def describe(st):
    """Type, permission bits, owner, link count, and size (not for directories: their size is the file system's own)."""
    text = f"{kind(st.st_mode)} {stat.S_IMODE(st.st_mode):04o} {st.st_uid}:{st.st_gid} n{st.st_nlink}"
    if not stat.S_ISDIR(st.st_mode):
        text += f" s{st.st_size}"
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        text += f" r{os.major(st.st_rdev)},{os.minor(st.st_rdev)}"
    return text


def lst(path):
    try:
        return describe(os.lstat(path))
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))


def st(path):
    try:
        return describe(os.stat(path))
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))


def write(path, data, mode=0o644):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("latin-1")
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))


def as_user(fn, *args):
    """Runs fn(*args) in a child as uid/gid 65534 with no supplementary groups; its result string."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            out = fn(*args)
        except BaseException as e:  # the child must never return into the parent's loop
            out = "EXC:" + type(e).__name__
            code = 1
        os.write(w, out.encode())
        os._exit(code)
    os.close(w)
    chunks = []
    while True:
        b = os.read(r, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(r)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode()


def renameat2(old, new, flags):
    if _libc.renameat2(AT_FDCWD, old.encode(), AT_FDCWD, new.encode(), flags) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))


def changed(before, after):
    return "changed" if after != before else "unchanged"


CHECKS = []


def check(fn):
    CHECKS.append(fn)
    return fn


# ---- open / creat -------------------------------------------------------------------------------------------------

@check
def open_creat_mode_and_umask(d):
    out = []
    for mode in (0o640, 0o777, 0o4755, 0o000):
        p = f"{d}/f{mode:o}"
        fd = os.open(p, os.O_CREAT | os.O_WRONLY, mode)
        os.close(fd)
        out.append(lst(p))
    return "; ".join(out)


@check
def open_excl_on_existing_is_eexist(d):
    write(f"{d}/f", b"x")
    return err(os.open, f"{d}/f", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644) + " " + read(f"{d}/f")


@check
def open_excl_on_dangling_symlink_is_eexist(d):
    os.symlink("nowhere", f"{d}/l")
    return err(os.open, f"{d}/l", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644) + " " + lst(f"{d}/nowhere")


@check
def open_creat_through_dangling_symlink_creates_target(d):
    os.symlink("target", f"{d}/l")
    fd = os.open(f"{d}/l", os.O_CREAT | os.O_WRONLY, 0o600)
    os.write(fd, b"via link")
    os.close(fd)
    return lst(f"{d}/target") + " " + read(f"{d}/target")


@check
def open_trunc_empties_the_file(d):
    write(f"{d}/f", b"x" * 100)
    os.close(os.open(f"{d}/f", os.O_WRONLY | os.O_TRUNC))
    return lst(f"{d}/f")


@check
def open_append_writes_at_the_end(d):
    write(f"{d}/f", b"abc")
    fd = os.open(f"{d}/f", os.O_WRONLY | os.O_APPEND)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, b"def")
    os.close(fd)
    return read(f"{d}/f")


@check
def open_errors(d):
    os.mkdir(f"{d}/dir")
    write(f"{d}/file", b"x")
    os.symlink("file", f"{d}/link")
    os.symlink("loop2", f"{d}/loop1")
    os.symlink("loop1", f"{d}/loop2")
    cases = [
        ("missing", lambda: os.open(f"{d}/missing", os.O_RDONLY)),
        ("missing-parent", lambda: os.open(f"{d}/nodir/f", os.O_CREAT | os.O_WRONLY, 0o644)),
        ("dir-wronly", lambda: os.open(f"{d}/dir", os.O_WRONLY)),
        ("dir-rdwr", lambda: os.open(f"{d}/dir", os.O_RDWR)),
        ("file-o-directory", lambda: os.open(f"{d}/file", os.O_RDONLY | os.O_DIRECTORY)),
        ("file-as-dir", lambda: os.open(f"{d}/file/x", os.O_RDONLY)),
        ("creat-file-as-dir", lambda: os.open(f"{d}/file/x", os.O_CREAT | os.O_WRONLY, 0o644)),
        ("nofollow-symlink", lambda: os.open(f"{d}/link", os.O_RDONLY | os.O_NOFOLLOW)),
        ("symlink-loop", lambda: os.open(f"{d}/loop1", os.O_RDONLY)),
        ("symlink-loop-dir", lambda: os.open(f"{d}/loop1/x", os.O_RDONLY)),
        ("name-255", lambda: os.close(os.open(f"{d}/" + "n" * 255, os.O_CREAT | os.O_WRONLY, 0o644))),
        ("name-256", lambda: os.open(f"{d}/" + "n" * 256, os.O_CREAT | os.O_WRONLY, 0o644)),
        ("path-too-long", lambda: os.open(f"{d}/" + "a/" * 2100 + "f", os.O_CREAT | os.O_WRONLY, 0o644)),
    ]
    return outcomes(cases)


@check
def write_to_read_only_descriptor_is_ebadf(d):
    write(f"{d}/f", b"abc")
    fd = os.open(f"{d}/f", os.O_RDONLY)
    try:
        return err(os.write, fd, b"x") + " " + read(f"{d}/f")
    finally:
        os.close(fd)


@check
def open_permissions_as_user(d):
    write(f"{d}/ro", b"x", 0o644)
    os.chmod(f"{d}/ro", 0o644)
    write(f"{d}/none", b"x", 0o000)
    os.chmod(f"{d}/none", 0o000)
    os.mkdir(f"{d}/private", 0o700)
    os.chmod(f"{d}/private", 0o700)
    write(f"{d}/private/f", b"x")
    os.mkdir(f"{d}/rootdir", 0o755)
    os.chmod(f"{d}/rootdir", 0o755)

    def user():
        cases = [
            ("read-0644", lambda: os.close(os.open(f"{d}/ro", os.O_RDONLY))),
            ("write-0644", lambda: os.open(f"{d}/ro", os.O_WRONLY)),
            ("read-0000", lambda: os.open(f"{d}/none", os.O_RDONLY)),
            ("search-0700-dir", lambda: os.stat(f"{d}/private/f")),
            ("list-0700-dir", lambda: os.listdir(f"{d}/private")),
            ("create-in-0755-root-dir", lambda: os.open(f"{d}/rootdir/new", os.O_CREAT | os.O_WRONLY, 0o644)),
        ]
        return outcomes(cases)

    root = " ".join(f"{n}={err(lambda p=p: os.close(os.open(p, os.O_RDWR)))}" for n, p in (("root-rdwr-0000", f"{d}/none"),))
    return as_user(user) + " " + root + " " + lst(f"{d}/rootdir/new")


# ---- chmod --------------------------------------------------------------------------------------------------------

@check
def chmod_sets_the_bits(d):
    write(f"{d}/f", b"x")
    os.mkdir(f"{d}/dir")
    out = []
    for mode in (0o000, 0o777, 0o4755, 0o2755, 0o1777, 0o640):
        os.chmod(f"{d}/f", mode)
        os.chmod(f"{d}/dir", mode)
        out.append(lst(f"{d}/f") + "|" + lst(f"{d}/dir"))
    return "; ".join(out)


@check
def chmod_follows_symlinks_and_changes_ctime(d):
    write(f"{d}/f", b"x")
    os.chmod(f"{d}/f", 0o644)
    os.symlink("f", f"{d}/l")
    before = os.stat(f"{d}/f").st_ctime_ns
    time.sleep(0.05)
    os.chmod(f"{d}/l", 0o600)
    return lst(f"{d}/f") + " ctime " + changed(before, os.stat(f"{d}/f").st_ctime_ns) + " link " + lst(f"{d}/l")[:6]


@check
def chmod_errors(d):
    write(f"{d}/f", b"x")
    os.chmod(f"{d}/f", 0o644)
    out = [f"missing={err(os.chmod, f'{d}/missing', 0o644)}", f"file-as-dir={err(os.chmod, f'{d}/f/x', 0o644)}",
           "user-not-owner=" + as_user(lambda: err(os.chmod, f"{d}/f", 0o777))]
    return " ".join(out) + " " + lst(f"{d}/f")


@check
def chmod_by_owner_as_user(d):
    os.chmod(d, 0o777)

    def user():
        write(f"{d}/mine", b"x", 0o600)
        r = err(os.chmod, f"{d}/mine", 0o640)
        # A non-member may not set the set-group-id bit of its own file: Linux clears it silently.
        os.chown(f"{d}/mine", -1, -1)
        r2 = err(os.chmod, f"{d}/mine", 0o2755)
        return f"{r} {r2} {lst(f'{d}/mine')}"
    return as_user(user)


@check
def write_by_user_clears_setuid(d):
    write(f"{d}/f", b"x")
    os.chown(f"{d}/f", NOBODY, NOBODY)
    os.chmod(f"{d}/f", 0o4777)

    def user():
        fd = os.open(f"{d}/f", os.O_WRONLY)
        os.write(fd, b"yy")
        os.close(fd)
        return lst(f"{d}/f")
    return as_user(user)


# ---- chown --------------------------------------------------------------------------------------------------------

@check
def chown_as_root(d):
    write(f"{d}/f", b"x")
    os.chown(f"{d}/f", NOBODY, NOBODY)
    a = lst(f"{d}/f")
    os.chown(f"{d}/f", -1, 0)
    b = lst(f"{d}/f")
    os.chown(f"{d}/f", -1, -1)
    c = lst(f"{d}/f")
    os.mkdir(f"{d}/dir")
    os.chown(f"{d}/dir", 1000, 1000)
    return f"{a}; {b}; {c}; {lst(f'{d}/dir')}"


@check
def chown_clears_setuid_of_a_regular_file(d):
    write(f"{d}/f", b"x")
    os.chmod(f"{d}/f", 0o6755)
    os.chown(f"{d}/f", NOBODY, NOBODY)
    return lst(f"{d}/f")


@check
def lchown_changes_the_link_not_the_target(d):
    write(f"{d}/f", b"x")
    os.symlink("f", f"{d}/l")
    os.lchown(f"{d}/l", NOBODY, NOBODY)
    a = f"{lst(f'{d}/f')} | {lst(f'{d}/l')[:2]}{os.lstat(f'{d}/l').st_uid}:{os.lstat(f'{d}/l').st_gid}"
    os.chown(f"{d}/l", 1000, 1000)
    return a + f" ; {lst(f'{d}/f')} | {os.lstat(f'{d}/l').st_uid}:{os.lstat(f'{d}/l').st_gid}"


@check
def chown_errors(d):
    write(f"{d}/f", b"x")
    out = [f"missing={err(os.chown, f'{d}/missing', 1, 1)}",
           "user-not-owner=" + as_user(lambda: err(os.chown, f"{d}/f", NOBODY, NOBODY))]
    os.chown(f"{d}/f", NOBODY, NOBODY)
    out.append("user-give-away=" + as_user(lambda: err(os.chown, f"{d}/f", 0, -1)))
    out.append("user-to-foreign-group=" + as_user(lambda: err(os.chown, f"{d}/f", -1, 0)))
    out.append("user-same=" + as_user(lambda: err(os.chown, f"{d}/f", NOBODY, NOBODY)))
    return " ".join(out) + " " + lst(f"{d}/f")


# ---- link ---------------------------------------------------------------------------------------------------------

@check
def link_shares_the_inode(d):
    write(f"{d}/a", b"shared")
    before = os.stat(f"{d}/a").st_ctime_ns
    time.sleep(0.05)
    os.link(f"{d}/a", f"{d}/b")
    same = os.stat(f"{d}/a").st_ino == os.stat(f"{d}/b").st_ino
    ctime = changed(before, os.stat(f"{d}/a").st_ctime_ns)
    with open(f"{d}/b", "ab") as f:
        f.write(b"+more")
    r = f"{lst(f'{d}/a')} {lst(f'{d}/b')} same-inode={same} ctime {ctime} {read(f'{d}/a')}"
    os.unlink(f"{d}/a")
    return r + " after-unlink " + lst(f"{d}/b")


@check
def link_errors(d):
    write(f"{d}/a", b"x")
    write(f"{d}/b", b"y")
    os.mkdir(f"{d}/dir")
    os.symlink("a", f"{d}/sl")
    cases = [
        ("existing", lambda: os.link(f"{d}/a", f"{d}/b")),
        ("directory", lambda: os.link(f"{d}/dir", f"{d}/dir2")),
        ("missing-source", lambda: os.link(f"{d}/missing", f"{d}/c")),
        ("missing-target-dir", lambda: os.link(f"{d}/a", f"{d}/nodir/c")),
        ("target-through-file", lambda: os.link(f"{d}/a", f"{d}/b/c")),
        ("name-256", lambda: os.link(f"{d}/a", f"{d}/" + "n" * 256)),
        ("symlink-itself", lambda: os.link(f"{d}/sl", f"{d}/sl2", follow_symlinks=False)),
    ]
    return outcomes(cases) + f" {lst(f'{d}/sl2')[:1]} {lst(f'{d}/a')}"


# ---- mkdir / rmdir ------------------------------------------------------------------------------------------------

@check
def mkdir_modes_and_parent_link_count(d):
    before = os.stat(d).st_nlink
    out = []
    for mode in (0o755, 0o700, 0o777, 0o1777, 0o000):
        os.mkdir(f"{d}/m{mode:o}", mode)
        out.append(lst(f"{d}/m{mode:o}"))
    out.append(f"parent+{os.stat(d).st_nlink - before}")
    os.rmdir(f"{d}/m755")
    out.append(f"after-rmdir+{os.stat(d).st_nlink - before}")
    return "; ".join(out)


@check
def mkdir_errors(d):
    os.mkdir(f"{d}/dir")
    write(f"{d}/f", b"x")
    os.symlink("dir", f"{d}/sl")
    cases = [
        ("existing", lambda: os.mkdir(f"{d}/dir")),
        ("existing-file", lambda: os.mkdir(f"{d}/f")),
        ("existing-symlink", lambda: os.mkdir(f"{d}/sl")),
        ("missing-parent", lambda: os.mkdir(f"{d}/nodir/x")),
        ("under-file", lambda: os.mkdir(f"{d}/f/x")),
        ("name-255", lambda: os.mkdir(f"{d}/" + "n" * 255)),
        ("name-256", lambda: os.mkdir(f"{d}/" + "n" * 256)),
    ]
    out = outcomes(cases)
    os.chmod(f"{d}/dir", 0o755)
    return out + " user-in-root-0755=" + as_user(lambda: err(os.mkdir, f"{d}/dir/u"))


@check
def rmdir_cases(d):
    os.mkdir(f"{d}/full")
    write(f"{d}/full/f", b"x")
    os.mkdir(f"{d}/empty")
    write(f"{d}/file", b"x")
    os.symlink("empty", f"{d}/sl")
    cases = [
        ("non-empty", lambda: os.rmdir(f"{d}/full")),
        ("file", lambda: os.rmdir(f"{d}/file")),
        ("symlink-to-dir", lambda: os.rmdir(f"{d}/sl")),
        ("missing", lambda: os.rmdir(f"{d}/missing")),
        ("dot", lambda: os.rmdir(f"{d}/empty/.")),
        ("empty", lambda: os.rmdir(f"{d}/empty")),
        ("again", lambda: os.rmdir(f"{d}/empty")),
    ]
    return outcomes(cases) + " " + lst(f"{d}/full/f")


@check
def rmdir_in_sticky_dir_as_user(d):
    os.mkdir(f"{d}/tmp", 0o1777)
    os.chmod(f"{d}/tmp", 0o1777)
    os.mkdir(f"{d}/tmp/roots")
    write(f"{d}/tmp/rootfile", b"x")
    os.chmod(f"{d}/tmp/rootfile", 0o666)

    def user():
        os.mkdir(f"{d}/tmp/mine")
        return (f"rmdir-foreign={err(os.rmdir, f'{d}/tmp/roots')} unlink-foreign={err(os.unlink, f'{d}/tmp/rootfile')} "
                f"rename-foreign={err(os.rename, f'{d}/tmp/rootfile', f'{d}/tmp/x')} rmdir-own={err(os.rmdir, f'{d}/tmp/mine')}")
    return as_user(user)


# ---- mkfifo / mknod -----------------------------------------------------------------------------------------------

@check
def mkfifo_and_mknod(d):
    os.mkfifo(f"{d}/fifo", 0o640)
    out = [lst(f"{d}/fifo"), "again=" + err(os.mkfifo, f"{d}/fifo"), "missing-parent=" + err(os.mkfifo, f"{d}/nodir/f")]
    fd = os.open(f"{d}/fifo", os.O_RDONLY | os.O_NONBLOCK)
    wfd = os.open(f"{d}/fifo", os.O_WRONLY | os.O_NONBLOCK)
    os.write(wfd, b"through the pipe")
    out.append(os.read(fd, 100).decode())
    os.close(wfd)
    os.close(fd)
    os.mknod(f"{d}/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(f"{d}/blk", 0o600 | stat.S_IFBLK, os.makedev(7, 200))
    os.mknod(f"{d}/reg", 0o600 | stat.S_IFREG)
    out += [lst(f"{d}/null"), lst(f"{d}/blk"), lst(f"{d}/reg")]
    out.append("user-mknod-chr=" + as_user(lambda: err(os.mknod, f"{d}/unull", 0o666 | stat.S_IFCHR, os.makedev(1, 3))))
    return "; ".join(out)


# ---- rename -------------------------------------------------------------------------------------------------------

@check
def rename_in_one_directory(d):
    write(f"{d}/a", b"content")
    os.rename(f"{d}/a", f"{d}/b")
    return f"{lst(f'{d}/a')} {lst(f'{d}/b')} {read(f'{d}/b')}"


@check
def rename_over_an_existing_file(d):
    write(f"{d}/a", b"new")
    write(f"{d}/b", b"old")
    os.link(f"{d}/b", f"{d}/b-link")
    os.rename(f"{d}/a", f"{d}/b")
    return f"{lst(f'{d}/a')} {lst(f'{d}/b')} {read(f'{d}/b')} old-link {lst(f'{d}/b-link')} {read(f'{d}/b-link')}"


@check
def rename_across_directories(d):
    os.mkdir(f"{d}/x")
    os.mkdir(f"{d}/y")
    write(f"{d}/x/f", b"moved")
    os.mkdir(f"{d}/x/sub")
    write(f"{d}/x/sub/inner", b"inner")
    os.rename(f"{d}/x/f", f"{d}/y/f")
    nx, ny = os.stat(f"{d}/x").st_nlink, os.stat(f"{d}/y").st_nlink
    os.rename(f"{d}/x/sub", f"{d}/y/sub")
    parent = os.stat(f"{d}/y/sub/..").st_ino == os.stat(f"{d}/y").st_ino
    return (f"{lst(f'{d}/x/f')} {read(f'{d}/y/f')} x-n{nx}->{os.stat(f'{d}/x').st_nlink} y-n{ny}->{os.stat(f'{d}/y').st_nlink} "
            f"dotdot-is-new-parent={parent} {read(f'{d}/y/sub/inner')} {lst(f'{d}/x/sub')}")


@check
def rename_directories_over_directories(d):
    os.mkdir(f"{d}/a")
    write(f"{d}/a/f", b"a")
    os.mkdir(f"{d}/empty")
    os.mkdir(f"{d}/full")
    write(f"{d}/full/f", b"full")
    write(f"{d}/file", b"x")
    cases = [
        ("dir-over-non-empty-dir", lambda: os.rename(f"{d}/a", f"{d}/full")),
        ("dir-over-file", lambda: os.rename(f"{d}/a", f"{d}/file")),
        ("file-over-dir", lambda: os.rename(f"{d}/file", f"{d}/empty")),
        ("dir-into-itself", lambda: os.rename(f"{d}/a", f"{d}/a/sub")),
        ("missing", lambda: os.rename(f"{d}/missing", f"{d}/z")),
        ("to-missing-dir", lambda: os.rename(f"{d}/file", f"{d}/nodir/z")),
        ("name-256", lambda: os.rename(f"{d}/file", f"{d}/" + "n" * 256)),
        ("dir-over-empty-dir", lambda: os.rename(f"{d}/a", f"{d}/empty")),
    ]
    return outcomes(cases) + f" {lst(f'{d}/a')} {read(f'{d}/empty/f')} {read(f'{d}/full/f')}"


@check
def rename_of_hard_links_to_one_inode_is_a_no_op(d):
    write(f"{d}/a", b"x")
    os.link(f"{d}/a", f"{d}/b")
    return err(os.rename, f"{d}/a", f"{d}/b") + f" {lst(f'{d}/a')} {lst(f'{d}/b')}"


@check
def rename_moves_the_symlink_not_the_target(d):
    write(f"{d}/t", b"target")
    os.symlink("t", f"{d}/l")
    os.rename(f"{d}/l", f"{d}/l2")
    return f"{lst(f'{d}/l')} {os.readlink(f'{d}/l2')} {lst(f'{d}/t')} {read(f'{d}/l2')}"


@check
def renameat2_noreplace_and_exchange(d):
    write(f"{d}/a", b"A")
    write(f"{d}/b", b"B")
    os.mkdir(f"{d}/dir")
    out = [f"noreplace-existing={err(renameat2, f'{d}/a', f'{d}/b', RENAME_NOREPLACE)}",
           f"noreplace-new={err(renameat2, f'{d}/a', f'{d}/c', RENAME_NOREPLACE)}",
           f"exchange={err(renameat2, f'{d}/c', f'{d}/b', RENAME_EXCHANGE)}",
           f"exchange-missing={err(renameat2, f'{d}/c', f'{d}/missing', RENAME_EXCHANGE)}",
           f"exchange-file-dir={err(renameat2, f'{d}/c', f'{d}/dir', RENAME_EXCHANGE)}"]
    return " ".join(out) + f" b={read(f'{d}/b')} c={lst(f'{d}/c')}:{read(f'{d}/c')} dir={lst(f'{d}/dir')} {lst(f'{d}/a')}"


# ---- symlink / readlink -------------------------------------------------------------------------------------------

@check
def symlink_cases(d):
    write(f"{d}/t", b"target")
    os.symlink("t", f"{d}/l")
    os.symlink("dangling", f"{d}/dl")
    long_target = "x" * 1023
    os.symlink(long_target, f"{d}/long")
    os.symlink("loop-b", f"{d}/loop-a")
    os.symlink("loop-a", f"{d}/loop-b")
    out = [lst(f"{d}/l")[:1], st(f"{d}/l"), os.readlink(f"{d}/l"), read(f"{d}/l"),
           "dangling-stat=" + st(f"{d}/dl"), "dangling-lstat=" + lst(f"{d}/dl")[:1],
           "long=" + str(os.readlink(f"{d}/long") == long_target) + f"/{os.lstat(f'{d}/long').st_size}",
           "existing=" + err(os.symlink, "t", f"{d}/l"),
           "loop=" + st(f"{d}/loop-a"), "loop-component=" + st(f"{d}/loop-a/x"),
           "readlink-file=" + err(os.readlink, f"{d}/t"),
           "missing-parent=" + err(os.symlink, "t", f"{d}/nodir/l"),
           "name-256=" + err(os.symlink, "t", f"{d}/" + "n" * 256),
           "target-4096=" + err(os.symlink, "y" * 4096, f"{d}/toolong")]
    return " ".join(out)


@check
def symlink_through_to_a_directory(d):
    os.mkdir(f"{d}/dir")
    write(f"{d}/dir/f", b"inside")
    os.symlink("dir", f"{d}/sl")
    os.symlink(f"{d}/dir/f", f"{d}/abs")
    return f"{read(f'{d}/sl/f')} {sorted(os.listdir(f'{d}/sl'))} {read(f'{d}/abs')}"


# ---- truncate / ftruncate -----------------------------------------------------------------------------------------

@check
def truncate_grow_and_shrink(d):
    write(f"{d}/f", b"0123456789")
    os.truncate(f"{d}/f", 20)
    a = lst(f"{d}/f") + " " + read(f"{d}/f").replace("\0", "_")
    os.truncate(f"{d}/f", 4)
    b = lst(f"{d}/f") + " " + read(f"{d}/f")
    fd = os.open(f"{d}/f", os.O_RDWR)
    os.ftruncate(fd, 1 << 20)
    os.lseek(fd, (1 << 20) - 3, os.SEEK_SET)
    tail = os.read(fd, 10)
    os.ftruncate(fd, 2)
    os.close(fd)
    return f"{a}; {b}; {len(tail)} {tail!r}; {lst(f'{d}/f')} {read(f'{d}/f')}"


@check
def truncate_errors(d):
    write(f"{d}/f", b"x")
    os.chmod(f"{d}/f", 0o644)
    os.mkdir(f"{d}/dir")
    fd = os.open(f"{d}/f", os.O_RDONLY)
    try:
        ro = err(os.ftruncate, fd, 0)
    finally:
        os.close(fd)
    cases = [
        ("missing", lambda: os.truncate(f"{d}/missing", 0)),
        ("dir", lambda: os.truncate(f"{d}/dir", 0)),
        ("negative", lambda: os.truncate(f"{d}/f", -1)),
        ("file-as-dir", lambda: os.truncate(f"{d}/f/x", 0)),
    ]
    return (outcomes(cases) + f" ftruncate-rdonly={ro} user-0644="
            + as_user(lambda: err(os.truncate, f"{d}/f", 0)) + " " + lst(f"{d}/f"))


@check
def truncate_changes_mtime(d):
    write(f"{d}/f", b"0123456789")
    os.utime(f"{d}/f", ns=(1_000_000_000, 1_000_000_000))
    os.truncate(f"{d}/f", 3)
    return changed(1_000_000_000, os.stat(f"{d}/f").st_mtime_ns)


# ---- unlink -------------------------------------------------------------------------------------------------------

@check
def unlink_of_an_open_file(d):
    write(f"{d}/f", b"still readable")
    fd = os.open(f"{d}/f", os.O_RDWR)
    os.unlink(f"{d}/f")
    gone = lst(f"{d}/f")
    os.lseek(fd, 0, os.SEEK_END)
    os.write(fd, b" and writable")
    os.lseek(fd, 0, os.SEEK_SET)
    data = os.read(fd, 100).decode()
    nlink = os.fstat(fd).st_nlink
    os.close(fd)
    return f"{gone} {data} n{nlink} {sorted(os.listdir(d))}"


@check
def unlink_errors(d):
    os.mkdir(f"{d}/dir")
    write(f"{d}/f", b"x")
    os.symlink("f", f"{d}/l")
    cases = [
        ("missing", lambda: os.unlink(f"{d}/missing")),
        ("dir", lambda: os.unlink(f"{d}/dir")),
        ("file-as-dir", lambda: os.unlink(f"{d}/f/x")),
        ("name-256", lambda: os.unlink(f"{d}/" + "n" * 256)),
        ("symlink", lambda: os.unlink(f"{d}/l")),
    ]
    out = outcomes(cases) + f" {lst(f'{d}/f')}"
    return out + " user-in-root-0755-dir=" + as_user(lambda: err(os.unlink, f"{d}/f"))


# ---- utimensat ----------------------------------------------------------------------------------------------------

@check
def utimensat_explicit_times(d):
    write(f"{d}/f", b"x")
    os.mkdir(f"{d}/dir")
    os.utime(f"{d}/f", ns=(1_234_567_890_123_456_789, 987_654_321_987_654_321))
    os.utime(f"{d}/dir", ns=(1_000_000_000, 2_000_000_001))
    a, b = os.stat(f"{d}/f"), os.stat(f"{d}/dir")
    return f"{a.st_atime_ns} {a.st_mtime_ns} {b.st_atime_ns} {b.st_mtime_ns}"


@check
def utimensat_now_and_omit(d):
    write(f"{d}/f", b"x")
    os.utime(f"{d}/f", ns=(1_000_000_000, 2_000_000_000))
    os.utime(f"{d}/f")  # UTIME_NOW for both
    s = os.stat(f"{d}/f")
    recent = abs(s.st_mtime - time.time()) < 86400 and abs(s.st_atime - time.time()) < 86400
    return f"now-set={recent} mtime {changed(2_000_000_000, s.st_mtime_ns)} atime {changed(1_000_000_000, s.st_atime_ns)}"


@check
def utimensat_on_a_symlink_itself(d):
    write(f"{d}/f", b"x")
    os.utime(f"{d}/f", ns=(5_000_000_000, 6_000_000_000))
    os.symlink("f", f"{d}/l")
    r = err(os.utime, f"{d}/l", ns=(7_000_000_000, 8_000_000_000), follow_symlinks=False)
    l, f = os.lstat(f"{d}/l"), os.stat(f"{d}/f")
    return f"{r} link {l.st_mtime_ns if r == 'ok' else '-'} target {f.st_atime_ns} {f.st_mtime_ns}"


@check
def utimensat_permissions_as_user(d):
    write(f"{d}/rootfile", b"x")
    os.chmod(f"{d}/rootfile", 0o644)
    write(f"{d}/shared", b"x")
    os.chmod(f"{d}/shared", 0o666)

    def user():
        return (f"explicit-not-owner={err(os.utime, f'{d}/rootfile', ns=(1, 1))} "
                f"now-not-writable={err(os.utime, f'{d}/rootfile')} "
                f"now-writable={err(os.utime, f'{d}/shared')} "
                f"explicit-writable-not-owner={err(os.utime, f'{d}/shared', ns=(1, 1))}")
    return as_user(user)


@check
def write_changes_mtime_and_ctime(d):
    write(f"{d}/f", b"x")
    os.utime(f"{d}/f", ns=(1_000_000_000, 1_000_000_000))
    before = os.stat(f"{d}/f").st_ctime_ns
    time.sleep(0.05)
    with open(f"{d}/f", "r+b") as f:
        f.write(b"y")
    s = os.stat(f"{d}/f")
    return f"mtime {changed(1_000_000_000, s.st_mtime_ns)} ctime {changed(before, s.st_ctime_ns)} {read(f'{d}/f')}"


@check
def directory_and_inode_times_after_namespace_changes(d):
    """Each change's effect on its directory's mtime/ctime and the inode's ctime (times first set to a fixed past)."""
    os.mkdir(f"{d}/a")
    os.mkdir(f"{d}/b")
    write(f"{d}/a/keep", b"k")
    write(f"{d}/a/moving", b"m")
    os.mkdir(f"{d}/a/subdir")
    ops = [
        ("create", lambda: write(f"{d}/a/new", b"n"), None),
        ("mkdir", lambda: os.mkdir(f"{d}/a/newdir"), None),
        ("symlink", lambda: os.symlink("keep", f"{d}/a/sl"), None),
        ("mkfifo", lambda: os.mkfifo(f"{d}/a/fifo"), None),
        ("link", lambda: os.link(f"{d}/a/keep", f"{d}/a/keep2"), f"{d}/a/keep"),
        ("unlink", lambda: os.unlink(f"{d}/a/keep2"), f"{d}/a/keep"),
        ("rename-within", lambda: os.rename(f"{d}/a/moving", f"{d}/a/moved"), f"{d}/a/moved"),
        ("rename-across", lambda: os.rename(f"{d}/a/moved", f"{d}/b/moved"), f"{d}/b/moved"),
        ("rename-dir-across", lambda: os.rename(f"{d}/a/subdir", f"{d}/b/subdir"), f"{d}/b/subdir"),
        ("rmdir", lambda: os.rmdir(f"{d}/a/newdir"), None),
        ("chmod-child", lambda: os.chmod(f"{d}/a/keep", 0o600), None),
        ("write-child", lambda: write(f"{d}/a/keep", b"changed"), None),
    ]
    out = []
    for name, op, inode in ops:
        for p in (f"{d}/a", f"{d}/b"):
            os.utime(p, ns=(1_000_000_000, 1_000_000_000))
        before_ctime = {p: os.stat(p).st_ctime_ns for p in (f"{d}/a", f"{d}/b")}
        inode_ctime = None
        if inode is not None:
            source = {"link": f"{d}/a/keep", "unlink": f"{d}/a/keep", "rename-within": f"{d}/a/moving",
                      "rename-across": f"{d}/a/moved", "rename-dir-across": f"{d}/a/subdir"}[name]
            inode_ctime = os.lstat(source).st_ctime_ns
        time.sleep(0.02)
        op()
        a, b = os.stat(f"{d}/a"), os.stat(f"{d}/b")
        text = (f"{name}: a-mtime {changed(1_000_000_000, a.st_mtime_ns)} a-ctime {changed(before_ctime[f'{d}/a'], a.st_ctime_ns)}"
                f" b-mtime {changed(1_000_000_000, b.st_mtime_ns)}")
        if inode_ctime is not None:
            text += f" inode-ctime {changed(inode_ctime, os.lstat(inode).st_ctime_ns)}"
        out.append(text)
    return "; ".join(out)


@check
def setgid_directory_passes_its_group_on(d):
    os.mkdir(f"{d}/g")
    os.chown(f"{d}/g", 0, 1000)
    os.chmod(f"{d}/g", 0o2775)
    write(f"{d}/g/file", b"x")
    os.mkdir(f"{d}/g/sub")
    os.mkfifo(f"{d}/g/fifo")
    return f"{lst(f'{d}/g/file')} {lst(f'{d}/g/sub')} {lst(f'{d}/g/fifo')}"


@check
def open_flags_more(d):
    write(f"{d}/f", b"abcdef")
    fd = os.open(f"{d}/f", os.O_RDWR)
    os.lseek(fd, 2, os.SEEK_SET)
    os.write(fd, b"XY")
    os.lseek(fd, 0, os.SEEK_SET)
    a = os.read(fd, 100).decode()
    os.close(fd)
    rdonly_trunc = err(lambda: os.close(os.open(f"{d}/f", os.O_RDONLY | os.O_TRUNC)))
    sizes = lst(f"{d}/f")
    os.mkdir(f"{d}/dir")
    dfd = os.open(f"{d}/dir", os.O_RDONLY | os.O_DIRECTORY)
    created = err(lambda: os.close(os.open("in-dir", os.O_CREAT | os.O_WRONLY, 0o640, dir_fd=dfd)))
    os.close(dfd)
    excl_dir = err(os.open, f"{d}/dir", os.O_CREAT | os.O_EXCL | os.O_RDONLY, 0o644)
    creat_dir = err(os.open, f"{d}/dir", os.O_CREAT | os.O_RDONLY, 0o644)
    return f"{a} rdonly-trunc={rdonly_trunc} {sizes} openat={created} {lst(f'{d}/dir/in-dir')} creat-excl-dir={excl_dir} creat-dir={creat_dir}"


@check
def directory_entries_after_changes(d):
    for i in range(50):
        write(f"{d}/f{i:02}", str(i).encode())
    for i in range(0, 50, 3):
        os.unlink(f"{d}/f{i:02}")
    for i in range(1, 50, 7):
        if os.path.exists(f"{d}/f{i:02}"):
            os.rename(f"{d}/f{i:02}", f"{d}/r{i:02}")
    names = sorted(os.listdir(d))
    return f"{len(names)} " + ",".join(names) + " " + "".join(read(f"{d}/{n}") for n in names)


@check
def large_write_and_read_back(d):
    data = bytes((i * 7 + i // 251) & 0xFF for i in range(3 << 20))
    with open(f"{d}/big", "wb") as f:
        f.write(data)
    with open(f"{d}/big", "rb") as f:
        same = f.read() == data
    with open(f"{d}/big", "r+b") as f:
        f.seek(1 << 20)
        f.write(b"Z" * 10)
        f.seek((1 << 20) - 2)
        around = f.read(14)
    return f"{lst(f'{d}/big')} same={same} {around!r}"


def main():
    base = sys.argv[1]
    os.umask(0o022)
    for i, fn in enumerate(CHECKS):
        d = os.path.join(base, f"{i:02}")
        os.mkdir(d)
        os.chmod(d, 0o755)
        try:
            result = fn(d)
        except Exception as e:  # an unexpected failure is a result too, the same on both sides or a difference
            result = f"EXC:{type(e).__name__}:{e}".replace(d, "D")
        print(f"{fn.__name__}\t{result}", flush=True)
    print(f"checks\t{len(CHECKS)}")


if __name__ == "__main__":
    main()
