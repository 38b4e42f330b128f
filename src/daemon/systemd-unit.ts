// The systemd unit that runs the daemon (`baton systemd`). Pure: the CLI
// decides the paths and the user, this renders the text.
//
// The one setting that matters most is KillMode=process. systemd's default
// (control-group) signals every process in the service's cgroup on stop and
// restart, and the app instances are in that cgroup (the daemon starts them):
// `systemctl restart baton` would take the site down. With KillMode=process
// only the daemon is signalled; the instances (own process groups, output to
// files, no pipes to the daemon) keep serving, and the next daemon re-adopts
// them from the store. `baton shutdown --stop-instances` is the way to stop
// them. (The alternative, one transient unit per instance via systemd-run,
// would make baton depend on a running systemd and D-Bus; this does not.)

export interface UnitOptions {
  /** argv that starts baton: [executable] or [node, …/bin/baton.js], absolute. */
  baton: string[];
  /** Absolute path of the config file. */
  config: string;
  /** Run the daemon as this user (unprivileged: binds low ports with CAP_NET_BIND_SERVICE). Root when absent. */
  user?: string;
  group?: string;
}

/** systemd's quoting for one ExecStart word. */
function word(s: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/%/g, '%%')}"`;
}

export function renderUnit(o: UnitOptions): string {
  const unprivileged = o.user !== undefined && o.user !== 'root';
  return [
    '# Written by `baton systemd`. Instances outlive daemon restarts: see KillMode below.',
    '[Unit]',
    'Description=baton: zero-downtime deploys (reverse proxy and process supervisor)',
    'Documentation=https://www.npmjs.com/package/baton',
    'After=network-online.target',
    'Wants=network-online.target',
    '',
    '[Service]',
    // The daemon says READY=1 once it serves; after `baton upgrade` (or SIGUSR2)
    // the new daemon sends MAINPID=<its pid> so systemd tracks it, not the old
    // one, which drains and exits (src/daemon/handover.ts). NotifyAccess=all:
    // the message comes from systemd-notify, a child of the daemon.
    'Type=notify',
    'NotifyAccess=all',
    `ExecStart=${[...o.baton, 'daemon', '--config', o.config].map(word).join(' ')}`,
    // SIGHUP re-reads the config file (a bad file changes nothing).
    'ExecReload=/bin/kill -HUP $MAINPID',
    // Start-up re-adopts the instances and waits (bounded) for their health checks.
    'TimeoutStartSec=90s',
    // Only the daemon is signalled on stop/restart: the app instances in this
    // cgroup keep serving and the next daemon re-adopts them.
    'KillMode=process',
    'KillSignal=SIGTERM',
    'TimeoutStopSec=30s',
    'Restart=on-failure',
    'RestartSec=1s',
    // The proxy holds two sockets per proxied connection.
    'LimitNOFILE=65536',
    ...(unprivileged
      ? [
          `User=${o.user}`,
          ...(o.group ? [`Group=${o.group}`] : []),
          // Bind :80/:443 without root. Apps then run as this user too: only a
          // root daemon can start them as their own users (`user:` per service).
          'AmbientCapabilities=CAP_NET_BIND_SERVICE',
          'CapabilityBoundingSet=CAP_NET_BIND_SERVICE',
          'NoNewPrivileges=yes',
        ]
      : []),
    '',
    '[Install]',
    'WantedBy=multi-user.target',
    '',
  ].join('\n');
}
