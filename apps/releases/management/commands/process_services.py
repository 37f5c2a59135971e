"""List, stop or keep watch over the services of the process deployer on this machine.

manage.py process_services                 what serves, per project and environment
manage.py process_services --stop          stop them all
manage.py process_services --stop-on-exit  stay in the foreground and stop them all on
                                           Ctrl-C / SIGTERM (``make demo`` runs this, so
                                           the demo leaves nothing behind)
"""

import signal
import threading

from django.core.management.base import BaseCommand

from apps.releases.deployers.process import RESERVED, ProcessDeployer, deploy_dir


def _services() -> list[tuple[str, str]]:
    """Every environment the deployer keeps files for (its lock file), so that one being
    deployed right now is included: stopping it waits for the deploy's lock."""
    root = deploy_dir()
    return sorted(
        (p.parent.parent.name, p.parent.name)
        for p in root.glob("*/*/.lock")
        if p.parent.parent.name not in RESERVED
    )


class Command(BaseCommand):
    help = "List, stop or watch the services the process deployer started on this machine."

    def add_arguments(self, parser):
        parser.add_argument("--stop", action="store_true", help="Stop every service.")
        parser.add_argument(
            "--stop-on-exit",
            action="store_true",
            help="Wait in the foreground; stop every service on Ctrl-C or SIGTERM.",
        )

    def handle(self, *args, stop=False, stop_on_exit=False, **options):
        deployer = ProcessDeployer()
        if stop_on_exit:
            done = threading.Event()
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: done.set())
            self.stdout.write("Deployed services will be stopped when the demo stops.")
            done.wait()
            stop = True
        for project, environment in _services():
            if stop:
                deployer.stop(project=project, environment=environment)
                self.stdout.write(f"stopped {project}/{environment}")
            else:
                status = deployer.status(project=project, environment=environment)
                state = "running" if status["running"] else "down"
                self.stdout.write(
                    f"{project}/{environment}: {status['release']} on "
                    f"{status.get('host')}:{status.get('port')}"
                    f" ({state}, restarts {status.get('restarts', 0)})"
                )
