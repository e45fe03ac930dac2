"""deploy/Dockerfile: hadolint finds nothing, and the image runs unprivileged with a
/livez health check, built in stages so that the final image holds no build tools.

There is no Docker engine here, so the image is not built; hadolint (with the ShellCheck
it embeds) lints every instruction and RUN line, and the tests below read the file.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.deploy.conftest import DEPLOY

DOCKERFILE = DEPLOY / "Dockerfile"


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def stages(text: str) -> list[Stage]:
    """The build stages of a Dockerfile: its instructions with continuations joined."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    found: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            found.append(Stage(base=parts[0], name=name))
        elif found:
            found[-1].instructions.append((keyword, args))
    return found


def env_values(stage: Stage) -> dict[str, str]:
    values: dict[str, str] = {}
    for args in stage.all("ENV"):
        for name, value in re.findall(r"(\w+)=(\S+)", args):
            values[name] = value
    return values


def run_hadolint(hadolint: Path, dockerfile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(hadolint), "--config", str(DEPLOY / ".hadolint.yaml"), "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_hadolint_finds_nothing(hadolint: Path) -> None:
    result = run_hadolint(hadolint, DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_fails_a_dockerfile_it_should(hadolint: Path, tmp_path: Path) -> None:
    """The tool and its exit status are real: a root, unpinned image fails the same check."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install requests\nUSER root\n")
    result = run_hadolint(hadolint, bad)
    assert result.returncode != 0
    assert "DL3002" in result.stdout  # last USER should not be root
    assert "DL3006" in result.stdout  # untagged base image


def test_final_stage_runs_unprivileged_with_a_livez_healthcheck() -> None:
    final = stages(DOCKERFILE.read_text())[-1]
    users = final.all("USER")
    assert users, "the final stage sets no USER, so the image would run as root"
    user, _, group = users[-1].partition(":")
    assert user.isdigit() and int(user) != 0, f"USER {users[-1]}: want a numeric, non-zero uid"
    assert not group or (group.isdigit() and int(group) != 0)

    env = env_values(final)
    port = env["SPYGLASS_PORT"]
    assert final.all("EXPOSE") == [port]
    assert env["SPYGLASS_HOST"] == "0.0.0.0"
    (check,) = final.all("HEALTHCHECK")
    assert "CMD" in check and not check.upper().startswith("NONE")
    assert f"127.0.0.1:{port}/livez" in check, check
    assert final.all("ENTRYPOINT") == ['["spyglass"]'] and final.all("CMD") == ['["serve"]']


def test_build_is_multi_stage_and_the_final_stage_installs_nothing() -> None:
    build, final = stages(DOCKERFILE.read_text())
    assert build.name and build.base == final.base
    installs = " ".join(build.all("RUN"))
    assert re.search(r"pip install --no-cache-dir \.(\s|$)", installs), installs
    assert "torch" not in installs and "[" not in installs  # the base install, no extras
    copies = final.all("COPY")
    assert copies == [f"--from={build.name} /opt/spyglass /opt/spyglass"]
    for run in final.all("RUN"):  # only the user and the data directory are made there
        assert not re.search(r"apt-get|apk |pip |gcc|make|build-essential", run), run


def test_the_build_context_admits_what_the_build_copies() -> None:
    """deploy/Dockerfile.dockerignore keeps .venv and data out of the context, not the sources."""
    build = stages(DOCKERFILE.read_text())[0]
    admitted = {
        line[1:].rstrip("/")
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    for copy in build.all("COPY"):
        *sources, _ = copy.split()
        for source in sources:
            assert source.rstrip("/") in admitted, source
