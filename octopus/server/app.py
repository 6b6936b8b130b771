"""The WSGI app: ``create_app`` wires resources to the collaborators it is given."""
import time

import falcon

from octopus.server import agents, audit, maintenance, metrics, overview, system, tasks
from octopus.server import credentials as creds
from octopus.server.auth import AuthMiddleware, FailedAuth
from octopus.server.errors import handle_unexpected, serialize_error
from octopus.server.openapi import OpenApiResource


def create_app(config, store, registry, dispatcher, admin_token, agent_token, static_dir,
               clock=time.time):
    counted = metrics.Metrics()
    credentials = creds.Credentials(store)
    app = falcon.App(middleware=[metrics.MetricsMiddleware(counted),
                                 AuthMiddleware(admin_token, agent_token, config.METRICS_TOKEN,
                                                credentials, config.REQUIRE_ENROLLMENT,
                                                FailedAuth(clock)),
                                 system.DatabaseGate(store),
                                 audit.AuditMiddleware(store),
                                 system.SecurityHeaders()])
    app.set_error_serializer(serialize_error)
    app.add_error_handler(Exception, handle_unexpected)
    app.req_options.auto_parse_form_urlencoded = False
    app.req_options.keep_blank_qs_values = True
    app.resp_options.secure_cookies_by_default = True

    app.add_route("/health", system.HealthResource(store, dispatcher, clock))
    app.add_route("/tasks", tasks.TasksResource(config, store, registry, dispatcher))
    waits = tasks.wait_slots(config)
    app.add_route("/tasks/{task_id}", tasks.TaskResource(store, registry, dispatcher, waits))
    app.add_route("/tasks/{task_id}/cancel", tasks.CancelResource(store, dispatcher))
    app.add_route("/executions", tasks.ExecutionsResource(store))
    app.add_route("/executions/{run_id:int(min=1, max=%d)}" % agents.MAX_ID, tasks.ExecutionResource(store))
    app.add_route("/agents", agents.AgentsResource(store))
    revoker = creds.Revoker(store, dispatcher, credentials)
    app.add_route("/agents/{name}", creds.AgentResource(revoker))
    app.add_route("/agents/{name}/revoke", creds.RevokeResource(revoker))
    app.add_route("/agent/enroll", creds.EnrollResource(
        credentials, (admin_token, agent_token, config.METRICS_TOKEN)))
    app.add_route("/stats", overview.StatsResource(store, clock))
    app.add_route("/schedule/preview", overview.SchedulePreviewResource(clock))
    app.add_route("/maintenance", maintenance.MaintenanceResource(config, store, clock))
    app.add_route("/audit", audit.AuditResource(store))
    beats = agents.Beats(config, store, dispatcher, clock)
    app.add_route("/heartbeat", agents.HeartbeatResource(config, beats, registry, dispatcher))
    app.add_route("/agent/work", agents.WorkResource(config, store, registry, dispatcher, beats,
                                                     counted))
    app.add_route("/metrics", metrics.MetricsResource(counted, store, dispatcher))
    app.add_route("/agent/results", agents.ResultsResource(store, dispatcher))
    app.add_route("/agent/tasks", tasks.AgentTasksResource(config, store, registry, dispatcher,
                                                           waits))
    app.add_route("/plugins", system.PluginsResource(registry))
    app.add_route("/plugins/{name}", system.PluginSourceResource(registry))
    app.add_route("/openapi.json", OpenApiResource())
    app.add_route("/", system.DashboardResource(static_dir))
    app.add_static_route("/static", static_dir)
    return app
