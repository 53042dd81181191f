"""A seccomp filter for sample processes: the kernel's riskiest doors, closed.

Namespaces, a separate uid and a read-only filesystem contain what a sample can *reach*; they do not
shrink the kernel code it can *call*, and most local kernel exploits start from a few system calls that
test code never needs. Installed on the zygote before its first fork (after ``PR_SET_NO_NEW_PRIVS``, so
no setuid program can drop it), so that every sample is born under it, and on the worker once it is
set up, the filter answers EPERM to:

* creating or entering namespaces: ``unshare`` and ``clone`` with any ``CLONE_NEW*`` flag, ``setns``
  (a new user namespace would give the sample every capability inside it, and with them netfilter,
  mounts and the rest of the code behind ``CAP_SYS_ADMIN`` checks); ``clone3`` answers ENOSYS, so
  libc falls back to ``clone``, whose flags the filter can read (as Docker's default profile does).
  The zygote's filter lets ``unshare(CLONE_NEWPID)`` and ``setns(fd, CLONE_NEWPID)`` through, which it
  makes per sample and which need CAP_SYS_ADMIN, so that the kernel refuses them to a sample anyway;
* io_uring, bpf, perf_event_open, userfaultfd, the keyring calls (keyctl, add_key, request_key);
* ptrace, process_vm_readv/writev, pidfd_getfd; mounts and the new mount API; module loading, kexec,
  reboot, swap, quotas, accounting, the clocks, syslog, open_by_handle_at and its pair, fanotify_init;
* on x86_64, any call through the x32 ABI; a call under another architecture's ABI (i386 through
  ``int 0x80``) kills the process.

Tables: x86_64 (``asm/unistd_64.h``) and aarch64 (``asm-generic/unistd.h``; not run here, this VM is
x86_64). On any other architecture no filter is installed, and :data:`SUPPORTED` says so. Threads,
fork, subprocesses and everything else a test program does are untouched.
"""

from __future__ import annotations

import ctypes
import errno
import os

from codeloop.sandbox import _linux

# name: (x86_64, aarch64) system-call numbers, from the kernel headers named above. Every call here but
# the last three is refused with EPERM; those three are filtered by their flags.
_NUMBERS = {
    "io_uring_setup": (425, 425), "io_uring_enter": (426, 426), "io_uring_register": (427, 427),
    "bpf": (321, 280), "perf_event_open": (298, 241), "userfaultfd": (323, 282),
    "keyctl": (250, 219), "add_key": (248, 217), "request_key": (249, 218),
    "ptrace": (101, 117), "process_vm_readv": (310, 270), "process_vm_writev": (311, 271), "pidfd_getfd": (438, 438),
    "kexec_load": (246, 104), "kexec_file_load": (320, 294),
    "init_module": (175, 105), "finit_module": (313, 273), "delete_module": (176, 106),
    "mount": (165, 40), "umount2": (166, 39), "pivot_root": (155, 41), "chroot": (161, 51), "setns": (308, 268),
    "open_tree": (428, 428), "move_mount": (429, 429), "fsopen": (430, 430), "fsconfig": (431, 431),
    "fsmount": (432, 432), "fspick": (433, 433), "mount_setattr": (442, 442),
    "swapon": (167, 224), "swapoff": (168, 225), "reboot": (169, 142), "acct": (163, 89),
    "quotactl": (179, 60), "quotactl_fd": (443, 443),
    "name_to_handle_at": (303, 264), "open_by_handle_at": (304, 265), "lookup_dcookie": (212, 18),
    "fanotify_init": (300, 262), "syslog": (103, 116),
    "settimeofday": (164, 170), "clock_settime": (227, 112), "adjtimex": (159, 171), "clock_adjtime": (305, 266),
    "unshare": (272, 97), "clone": (56, 220), "clone3": (435, 435),
}
_DENIED_NAMES = list(_NUMBERS)[:-3]
_TABLES = {machine: (arch, {name: numbers[i] for name, numbers in _NUMBERS.items()})
           for i, (machine, arch) in enumerate((("x86_64", 0xC000003E), ("aarch64", 0xC00000B7)))}
"""machine: (its AUDIT_ARCH value, name -> number)."""
SUPPORTED = os.uname().machine in _TABLES
"""Whether this architecture gets the filter."""

NAMESPACE_FLAGS = (_linux.CLONE_NEWNS | _linux.CLONE_NEWUTS | _linux.CLONE_NEWIPC | _linux.CLONE_NEWUSER
                   | _linux.CLONE_NEWPID | _linux.CLONE_NEWNET | 0x02000000)  # | CLONE_NEWCGROUP
CLONE_NEWTIME = 0x80  # unshare only: in clone's flags these bits are the exit signal
X32_SYSCALL_BIT = 0x40000000

# classic BPF, as seccomp runs it
_LD_W_ABS = 0x20
_JEQ, _JGE, _JSET = 0x15, 0x35, 0x45  # BPF_JMP | op | BPF_K
_RET = 0x06
_ALLOW, _ERRNO, _KILL_PROCESS = 0x7FFF0000, 0x00050000, 0x80000000
_NR, _ARCH, _ARG0, _ARG1 = 0, 4, 16, 24  # offsets in struct seccomp_data (an arg's low 32 bits: little-endian)
PR_GET_SECCOMP, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 21, 22, 2


class _Insn(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_Insn))]


def assemble(machine: str, pid_namespaces: bool = False) -> list[tuple[int, int, int, int]]:
    """The filter for ``machine`` as (code, jt, jf, k) instructions; jumps go to the labels at its end.

    With ``pid_namespaces``, two calls pass that are otherwise refused: ``unshare(CLONE_NEWPID)``
    (that flag alone) and ``setns(fd, CLONE_NEWPID)``, which the zygote makes to give each sample a PID
    namespace of its own (see :func:`install`). Both need CAP_SYS_ADMIN, which no sample holds: the
    kernel refuses them to a sample with the same EPERM."""
    arch, nr = _TABLES[machine]
    code: list[tuple[int, str | int, str | int, int]] = [
        (_LD_W_ABS, 0, 0, _ARCH),
        (_JEQ, 0, "kill", arch),
        (_LD_W_ABS, 0, 0, _NR),
    ]
    if machine == "x86_64":
        code.append((_JGE, "eperm", 0, X32_SYSCALL_BIT))
    denied = [name for name in _DENIED_NAMES if not (pid_namespaces and name == "setns")]
    code += [(_JEQ, "eperm", 0, nr[name]) for name in denied]
    code += [(_JEQ, "enosys", 0, nr["clone3"]), (_JEQ, "unshare", 0, nr["unshare"]), (_JEQ, "clone", 0, nr["clone"])]
    if pid_namespaces:
        code.append((_JEQ, "setns", 0, nr["setns"]))
    code.append((_RET, 0, 0, _ALLOW))
    labels = {"unshare": len(code)}
    if pid_namespaces:  # exactly CLONE_NEWPID, in all 64 bits of the flags
        code += [(_LD_W_ABS, 0, 0, _ARG0 + 4), (_JEQ, 0, "unshare_flags", 0), (_LD_W_ABS, 0, 0, _ARG0),
                 (_JEQ, "allow", 0, _linux.CLONE_NEWPID)]
    labels["unshare_flags"] = len(code)
    code += [(_LD_W_ABS, 0, 0, _ARG0), (_JSET, "eperm", 0, NAMESPACE_FLAGS | CLONE_NEWTIME), (_RET, 0, 0, _ALLOW)]
    labels["clone"] = len(code)
    code += [(_LD_W_ABS, 0, 0, _ARG0), (_JSET, "eperm", 0, NAMESPACE_FLAGS), (_RET, 0, 0, _ALLOW)]
    if pid_namespaces:  # setns's nstype (an int): CLONE_NEWPID passes, anything else (0: any type) not
        labels["setns"] = len(code)
        code += [(_LD_W_ABS, 0, 0, _ARG1), (_JEQ, "allow", "eperm", _linux.CLONE_NEWPID)]
        labels["allow"] = len(code)
        code.append((_RET, 0, 0, _ALLOW))
    for label, ret in (("eperm", _ERRNO | errno.EPERM), ("enosys", _ERRNO | errno.ENOSYS), ("kill", _KILL_PROCESS)):
        labels[label] = len(code)
        code.append((_RET, 0, 0, ret))

    def offset(at: int, target: str | int) -> int:
        if isinstance(target, int):
            return target
        jump = labels[target] - at - 1
        assert 0 <= jump < 256, (target, jump)
        return jump

    return [(op, offset(i, jt), offset(i, jf), k) for i, (op, jt, jf, k) in enumerate(code)]


def available() -> bool:
    """Whether this kernel filters system calls (``PR_GET_SECCOMP`` answers; it is EINVAL without
    CONFIG_SECCOMP). The worker checks at start-up, so a missing filter is an error, not a quiet gap."""
    return _linux._libc.prctl(PR_GET_SECCOMP, 0, 0, 0, 0) >= 0


def install(pid_namespaces: bool = False) -> None:
    """Install the filter on this process and all it will start (:func:`assemble`'s, with
    ``pid_namespaces`` as given). Needs ``PR_SET_NO_NEW_PRIVS`` first. Raises OSError where the kernel
    refuses (then nothing untrusted may run).

    The worker installs it on itself once set up, and the zygote on itself before its first fork, so
    that every sample is born under it: installed per sample, the kernel built it anew for each one,
    and the ctypes call faulted in pages of the sample's own (README: what the move saved per sample)."""
    if not SUPPORTED:
        return
    insns = assemble(os.uname().machine, pid_namespaces)
    array = (_Insn * len(insns))(*(_Insn(*insn) for insn in insns))
    program = _Prog(len(insns), ctypes.cast(array, ctypes.POINTER(_Insn)))
    if _linux._libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(program), 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"seccomp filter refused: {os.strerror(err)}")
