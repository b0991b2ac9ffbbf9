"""python manage.py simulate_attribution --site ID [--days 7] [--sizes 10,20,...]
[--holds 30] [--target 0.995] [--seed N] [--out DIR]

Accuracy of attribution against pool size for one site's pool, simulated on
the site's own last week of traffic (or the default scenario when it has too
little), through the real services in virtual time; nothing is kept.
"""

from dataclasses import replace
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.translation import gettext as _
from tqdm import tqdm

from simulation import charts, services
from simulation.sandbox import PoolShape
from simulation.scenario import Scenario, plan
from substitution.models import Pool
from tracker.models import Site


class Command(BaseCommand):
    help = "Simulate attribution accuracy against pool size for a site's pool."

    def add_arguments(self, parser):
        parser.add_argument("--site", type=int, required=True)
        parser.add_argument("--pool", type=int, help="a pool of the site's rules (default: its first dynamic rule's)")
        parser.add_argument("--days", type=float, default=7, help="simulated days")
        parser.add_argument("--sizes", help="pool sizes to try, e.g. 10,20,40 (default: around the expected peak)")
        parser.add_argument("--holds", help="holds in minutes to try, e.g. 15,30 (default: the pool's)")
        parser.add_argument("--target", type=float, default=services.DEFAULT_TARGET)
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--out", default=".", help="folder for the CSV and PNG files")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, **options):
        site = Site.objects.select_related("project").filter(pk=options["site"]).first()
        if site is None:
            raise CommandError(_("No site with id %(id)s.") % {"id": options["site"]})
        if not 0 < options["target"] <= 1:
            raise CommandError(_("The target is a share between 0 and 1, e.g. 0.995."))
        if not 0 < options["days"] <= 31:
            raise CommandError(_("Days must be more than 0 and at most 31."))
        pool = self._pool(site, options["pool"])
        out = Path(options["out"])
        if not out.is_dir():
            raise CommandError(_("No such folder: %(path)s") % {"path": out})
        try:
            holds = services.parse_sizes(options["holds"]) if options["holds"] else [pool.hold_minutes]
        except ValueError as error:
            raise CommandError(str(error)) from None

        now = timezone.now()
        learned = services.learned_scenario([site.pk], now, site.project.time_zone)
        if learned is None:
            self.stdout.write(_("Too little traffic in the last 7 days to learn from: the default scenario is used."))
            scenario = Scenario(days=options["days"])
        else:
            self.stdout.write(_("Traffic learned from the site's last 7 days of sessions."))
            scenario = replace(learned, days=options["days"])
        try:
            sizes = services.parse_sizes(options["sizes"]) if options["sizes"] else None
        except ValueError as error:
            raise CommandError(str(error)) from None
        sizes = sizes or services.default_sizes(scenario, holds[0])
        traffic = plan(scenario, options["seed"])
        self.stdout.write(
            _("%(visitors)s visitors, %(visits)s visits, %(letters)s letters; sizes %(sizes)s; holds %(holds)s")
            % {
                "visitors": len(traffic.visits),
                "visits": traffic.visit_count,
                "letters": len(traffic.letters),
                "sizes": ", ".join(map(str, sizes)),
                "holds": ", ".join(map(str, holds)),
            }
        )
        with tqdm(total=1000, disable=options["no_progress"], unit="‰", file=self.stderr) as bar:

            def progress(fraction):
                bar.update(round(fraction * 1000) - bar.n)

            start = services.virtual_start(now, scenario.days, site.project.time_zone)
            points = services.simulate_sizes(traffic, PoolShape.of(pool), sizes, holds, start, progress)
        self._table(points)
        recommended = services.smallest_reaching(points, options["target"], hold=pool.hold_minutes)
        if recommended is None:
            recommended = services.smallest_reaching(points, options["target"])
        stem = out / f"simulation-site{site.pk}-pool{pool.pk}"
        charts.write_csv(points, stem.with_suffix(".csv"))
        title = _("%(site)s, pool %(pool)s: %(days)s days") % {
            "site": site.name,
            "pool": pool.name,
            "days": options["days"],
        }
        charts.write_png(points, stem.with_suffix(".png"), options["target"], recommended, title)
        self.stdout.write(
            _("Curve written to %(csv)s and %(png)s")
            % {"csv": stem.with_suffix(".csv"), "png": stem.with_suffix(".png")}
        )
        if recommended is None:
            self.stdout.write(
                _("No size tried reaches %(target)s of letters credited to the right visitor: try larger sizes.")
                % {"target": f"{options['target']:.1%}"}
            )
        else:
            self.stdout.write(
                _("Smallest pool size reaching %(target)s: %(size)s")
                % {"target": f"{options['target']:.1%}", "size": recommended}
            )

    def _pool(self, site: Site, pool_id: int | None) -> Pool:
        if pool_id is None:
            pool = services.site_pool(site)
            if pool is None:
                raise CommandError(_("The site has no active dynamic rule with a pool."))
            return pool
        pool = Pool.objects.select_related("project").filter(pk=pool_id, project_id=site.project_id).first()
        if pool is None:
            raise CommandError(_("No pool with id %(id)s in the site's project.") % {"id": pool_id})
        return pool

    def _table(self, points) -> None:
        header = (
            _("size"),
            _("hold"),
            _("letters"),
            _("correct visitor"),
            _("correct source"),
            _("wrong visitor"),
            _("wrong source"),
            _("unknown"),
            _("exhaustions"),
            _("taken over"),
        )
        rows = [header]
        for p in points:
            v = p.verdicts
            rows.append(
                (
                    str(p.size),
                    str(p.hold),
                    str(v.letters),
                    f"{v.visitor_accuracy:.2%}",
                    f"{v.source_accuracy:.2%}",
                    str(v.wrong_visitor),
                    str(v.wrong_source),
                    str(v.unknown),
                    str(v.exhaustions),
                    str(v.taken_over),
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        for row in rows:
            self.stdout.write("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))
