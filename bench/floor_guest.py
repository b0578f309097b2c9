"""The floor for latency_bench: Kiln's guest kernel with bench/floor/floor_init.c as PID 1 (it echoes
bytes on the kiln.agent virtio-serial port; no Kiln code in the guest), in QEMU of the same shape as
Kiln's VMs (src/vm/qemu_command.cpp, src/vm/vm.cpp: machine, accelerator, kernel command line,
devices, file-backed RAM), unjailed. Its snapshot (RAM file + device state) is built once and cached
in $KILN_CACHE/floor-<hash of the inputs>; each restore runs in a QEMU pre-started with
`-incoming defer` on a private (copy-on-write) mapping of the RAM file, as Kiln's spares do."""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from qmp_client import Qmp, QmpError

HERE = Path(__file__).resolve().parent
INIT_SOURCE = HERE / "floor" / "floor_init.c"
QEMU = "qemu-system-x86_64"
MEMORY_MIB = 256  # the `tiny` template's shape: 1 vCPU, 256 MiB
TCG_TB_MIB = 128  # VmConfig::tcg_tb_mib
SECCOMP = "on,obsolete=deny,elevateprivileges=deny,resourcecontrol=deny,spawn=deny"
MIGRATE_FD = "floor-migrate"


def cache_root() -> Path:
    return Path(os.environ.get("KILN_CACHE", "/var/cache/kiln"))


def host_tsc_khz() -> int:
    """As src/vm/accel.cpp host_tsc_khz(): the kernel's tsc_freq_khz, else /proc/cpuinfo's cpu MHz."""
    try:
        return int(Path("/sys/devices/system/cpu/cpu0/tsc_freq_khz").read_text().strip())
    except (OSError, ValueError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return int(float(line.split(":", 1)[1]) * 1000 + 0.5)
    return 0


def kernel_cmdline() -> str:
    """kernel_cmdline() and boot_kernel_args() for a 1-vCPU guest under TCG with Kiln's boot savings
    (src/vm/qemu_command.cpp, src/vm/vm.cpp). floor_init is /sbin/init, so no init= is needed."""
    line = "console=ttyS0 root=/dev/vda rw rootfstype=ext4 reboot=t panic=-1 quiet mitigations=off"
    khz = host_tsc_khz()
    if khz:
        line += f" tsc_early_khz={khz}"
    line += " pty.legacy_count=0 8250.nr_uarts=1 tsc=reliable noapictimer noreplace-smp"
    if os.environ.get("KILN_GUEST_ASLR") != "1":
        line += " norandmaps"
    return line


def qemu_has_seccomp() -> bool:
    out = subprocess.run([QEMU, "-sandbox", SECCOMP, "-version"], capture_output=True, timeout=30)
    return out.returncode == 0


def qemu_argv(run: Path, kernel: Path, disk: Path, memory: Path, share: bool, incoming: bool, seccomp: bool) -> list[str]:
    """build_qemu_argv() of src/vm/qemu_command.cpp for this guest: boot (kernel, -S) or -incoming defer."""
    mem = f"{MEMORY_MIB}M"
    argv = [QEMU, "-name", "kiln-floor,debug-threads=on", "-M", "microvm,acpi=off,memory-backend=mem",
            "-nodefaults", "-no-user-config", "-nographic", "-no-reboot", "-display", "none", "-msg", "timestamp=on",
            "-accel", f"tcg,thread=multi,tb-size={TCG_TB_MIB}", "-m", mem, "-smp", "1",
            "-object", f"memory-backend-file,id=mem,size={mem},mem-path={memory},share={'on' if share else 'off'}"]
    if not incoming:
        argv += ["-kernel", str(kernel), "-append", kernel_cmdline()]
    argv += ["-chardev", f"socket,id=console,path={run}/console.sock,server=on,wait=off", "-serial", "chardev:console",
             "-chardev", f"socket,id=qmp,path={run}/qmp.sock,server=on,wait=off", "-mon", "chardev=qmp,mode=control",
             "-drive", f"id=root,file={disk},format=raw,if=none,cache=unsafe", "-device", "virtio-blk-device,drive=root",
             "-device", "virtio-serial-device",
             "-chardev", f"socket,id=agent,path={run}/agent.sock,server=on,wait=off",
             "-device", "virtserialport,chardev=agent,name=kiln.agent",
             "-object", "rng-random,id=rng,filename=/dev/urandom", "-device", "virtio-rng-device,rng=rng"]
    argv += ["-incoming", "defer"] if incoming else ["-S"]
    if seccomp:
        argv += ["-sandbox", SECCOMP]
    return argv


def connect_unix(path: Path, timeout: float = 10.0) -> socket.socket:
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(path))
            return sock
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.001)


class FloorVm:
    """One QEMU of the floor guest in its own run dir: QMP, the serial console drained in a thread
    (kept for error messages), the agent port's host end. Killed by PID on close()."""

    def __init__(self, run: Path, argv: list[str]):
        self.run = run
        run.mkdir(parents=True, exist_ok=True)
        self.log = open(run / "qemu.log", "wb")
        self.proc = subprocess.Popen(argv, cwd=run, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        self.console_text = bytearray()
        try:
            self.qmp = Qmp(str(run / "qmp.sock"))
            self.console = connect_unix(run / "console.sock")
            self.agent = connect_unix(run / "agent.sock")
        except Exception as e:
            self.close()
            raise RuntimeError(f"the floor QEMU did not come up: {e}; {self.describe()}") from e
        threading.Thread(target=self._drain_console, daemon=True).start()

    def _drain_console(self) -> None:
        try:
            while chunk := self.console.recv(4096):
                self.console_text += chunk
                del self.console_text[:-8192]
        except OSError:
            pass

    def describe(self) -> str:
        log = (self.run / "qemu.log").read_bytes()[-1500:].decode(errors="replace")
        console = bytes(self.console_text[-1500:]).decode(errors="replace")
        return f"qemu.log: {log.strip() or '(empty)'}; console: {console.strip() or '(empty)'}"

    def echo(self, timeout: float) -> None:
        """Sends one byte on the agent port and waits for it to come back."""
        self.agent.settimeout(timeout)
        self.agent.sendall(b"k")
        try:
            got = self.agent.recv(1)
        except socket.timeout:
            raise RuntimeError(f"no echo from the floor guest within {timeout} s; {self.describe()}") from None
        if got != b"k":
            raise RuntimeError(f"the floor guest answered {got!r}; {self.describe()}")

    def cont(self) -> None:
        """QMP cont, repeated while QEMU says the loaded state is not finalized (as VmMigration::resume)."""
        deadline = time.monotonic() + 5
        while True:
            try:
                self.qmp.execute("cont")
                return
            except QmpError as e:
                if "not finalized" not in str(e) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.0002)

    def close(self) -> None:
        for s in ("agent", "console", "qmp"):
            try:
                getattr(self, s).close()
            except (AttributeError, OSError):
                pass
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.log.close()


@dataclass
class FloorSnapshot:
    dir: Path
    kernel: Path
    seccomp: bool

    @property
    def memory(self) -> Path:
        return self.dir / "memory"

    @property
    def state(self) -> Path:
        return self.dir / "state"

    @property
    def disk(self) -> Path:
        """The disk as the snapshotted guest left it (each restore gets a copy)."""
        return self.dir / "rootfs.ext4"

    @property
    def pristine(self) -> Path:
        """The image as built (each cold boot gets a copy)."""
        return self.dir / "pristine.ext4"


def cache_key(kernel: Path, seccomp: bool) -> str:
    """Everything the snapshot depends on: the init's source, this file (the QEMU shape), the kernel
    (its cached path names its build key), QEMU's version and the kernel command line."""
    h = hashlib.sha256()
    h.update(INIT_SOURCE.read_bytes())
    h.update(Path(__file__).read_bytes())
    st = kernel.stat()
    h.update(f"{kernel.resolve()}|{st.st_size}|{st.st_mtime_ns}|{seccomp}".encode())
    h.update(subprocess.run([QEMU, "--version"], capture_output=True, check=True).stdout)
    h.update(kernel_cmdline().encode())
    return h.hexdigest()[:16]


def build_image(work: Path) -> Path:
    """floor_init as /sbin/init of a 16 MiB ext4 image made without mounting (as scripts/build-image-tiny.sh)."""
    root = work / "root"
    for d in ("sbin", "dev", "sys", "proc", "tmp"):
        (root / d).mkdir(parents=True, exist_ok=True)
    subprocess.run(["cc", "-static", "-O2", "-o", str(root / "sbin" / "init"), str(INIT_SOURCE)], check=True)
    image = work / "rootfs.ext4"
    with open(image, "wb") as f:
        f.truncate(16 << 20)
    # Inode tables and journal written now: otherwise the guest's ext4lazyinit thread would zero
    # them after boot, in every restore too (as scripts/build-image-tiny.sh says).
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(root), "-E", "root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0",
                    str(image)], check=True)
    shutil.rmtree(root)
    return image


def boot(run: Path, kernel: Path, disk: Path, memory: Path, seccomp: bool, timeout: float = 120.0) -> tuple[FloorVm, float]:
    """Cold boot (RAM on `memory`, share=on) to the first echoed byte. Returns the VM and the ms from
    QEMU's spawn to the echo (Kiln's boot shape: started with -S, console and agent connected, cont)."""
    t0 = time.perf_counter()
    vm = FloorVm(run, qemu_argv(run, kernel, disk, memory, share=True, incoming=False, seccomp=seccomp))
    try:
        vm.qmp.execute("cont")
        vm.echo(timeout)
    except Exception:
        vm.close()
        raise
    return vm, (time.perf_counter() - t0) * 1000


def snapshot_of(vm: FloorVm, state: Path) -> None:
    """Device state only (x-ignore-shared: the RAM is the shared file), written to an fd handed over
    with getfd, as src/vm/vm_migration.cpp does; unthrottled, since the VM is stopped."""
    vm.qmp.execute("stop")
    vm.qmp.execute("migrate-set-parameters", {"max-bandwidth": 1 << 40, "downtime-limit": 100000})
    vm.qmp.execute("migrate-set-capabilities", {"capabilities": [
        {"capability": "x-ignore-shared", "state": True}, {"capability": "events", "state": True}]})
    fd = os.open(state, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        vm.qmp.execute("getfd", {"fdname": MIGRATE_FD}, fd=fd)
    finally:
        os.close(fd)
    vm.qmp.execute("migrate", {"uri": f"fd:{MIGRATE_FD}"})
    ev = vm.qmp.wait_event("MIGRATION", 60, lambda d: d.get("status") in ("completed", "failed", "cancelled"))
    if ev["data"]["status"] != "completed":
        raise RuntimeError(f"the floor snapshot's migration ended {ev['data']['status']}")


def ensure_snapshot(scratch: Path) -> tuple[FloorSnapshot, bool]:
    """The cached floor snapshot, built (in a temp dir beside it, renamed into place) if missing.
    Returns it and whether it was built now."""
    kernel = cache_root() / "kernel" / "vmlinux"
    if not kernel.exists():
        raise RuntimeError(f"no guest kernel at {kernel} (make images)")
    seccomp = qemu_has_seccomp()
    final = cache_root() / f"floor-{cache_key(kernel, seccomp)}"
    snap = FloorSnapshot(final, kernel, seccomp)
    if snap.state.exists():
        return snap, False
    build = Path(tempfile.mkdtemp(prefix=".floor-build-", dir=cache_root()))
    try:
        shutil.copyfile(build_image(build), build / "pristine.ext4")
        run = scratch / "floor-bake"
        vm, _ = boot(run, kernel, build / "rootfs.ext4", build / "memory", seccomp)
        try:
            snapshot_of(vm, build / "state")
        finally:
            vm.close()
            shutil.rmtree(run, ignore_errors=True)
        try:
            build.rename(final)
        except OSError:
            if not snap.state.exists():  # not another run's identical snapshot: a real failure
                raise
    finally:
        shutil.rmtree(build, ignore_errors=True)
    # Snapshots of earlier inputs (another kernel, QEMU or bench) are of no further use.
    for old in cache_root().glob("floor-*"):
        if old != final and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    return snap, True


def cold_boot_ms(snap: FloorSnapshot, scratch: Path) -> float:
    """A baseline: QEMU spawn to the first echoed byte, booting a fresh copy of the pristine image."""
    run = Path(tempfile.mkdtemp(prefix="boot-", dir=scratch))
    try:
        disk = run / "rootfs.ext4"
        shutil.copyfile(snap.pristine, disk)
        vm, ms = boot(run / "vm", snap.kernel, disk, run / "memory", snap.seccomp)
        vm.close()
        return ms
    finally:
        shutil.rmtree(run, ignore_errors=True)


class PreparedRestore:
    """The untimed part of a floor restore, as a Kiln spare holds it: QEMU started with -incoming
    defer on a private mapping of the RAM file and its own copy of the disk, QMP negotiated, the
    migration capabilities set, console and agent connected, the state file open."""

    def __init__(self, snap: FloorSnapshot, scratch: Path):
        self.run = Path(tempfile.mkdtemp(prefix="restore-", dir=scratch))
        disk = self.run / "rootfs.ext4"
        shutil.copyfile(snap.disk, disk)
        try:
            self.vm = FloorVm(self.run / "vm", qemu_argv(self.run / "vm", snap.kernel, disk, snap.memory, share=False,
                                                         incoming=True, seccomp=snap.seccomp))
        except Exception:
            shutil.rmtree(self.run, ignore_errors=True)
            raise
        try:
            self.vm.qmp.execute("migrate-set-capabilities", {"capabilities": [
                {"capability": "x-ignore-shared", "state": True}, {"capability": "events", "state": True}]})
            self.state_fd = os.open(snap.state, os.O_RDONLY)
        except Exception:
            self.vm.close()
            shutil.rmtree(self.run, ignore_errors=True)
            raise

    def pid(self) -> int:
        return self.vm.proc.pid

    def restore(self) -> dict[str, float]:
        """Timed: getfd (the state file's fd over the QMP socket), migrate-incoming fd:NAME, the
        MIGRATION completed event, cont, one byte out and its echo back. Milliseconds from the
        start to each step's end."""
        qmp = self.vm.qmp
        t0 = time.perf_counter()
        qmp.execute("getfd", {"fdname": MIGRATE_FD}, fd=self.state_fd)
        qmp.execute("migrate-incoming", {"uri": f"fd:{MIGRATE_FD}"})
        ev = qmp.wait_event("MIGRATION", 30, lambda d: d.get("status") in ("completed", "failed", "cancelled"))
        if ev["data"]["status"] != "completed":
            raise RuntimeError(f"the floor restore's migration ended {ev['data']['status']}; {self.vm.describe()}")
        t_loaded = time.perf_counter()
        self.vm.cont()
        t_running = time.perf_counter()
        self.vm.echo(10)
        t_echo = time.perf_counter()
        return {"loaded": (t_loaded - t0) * 1000, "running": (t_running - t0) * 1000, "echo": (t_echo - t0) * 1000}

    def close(self) -> None:
        os.close(self.state_fd)
        self.vm.close()
        shutil.rmtree(self.run, ignore_errors=True)

