# Sourced by the stack's scripts: the processes they start are known by the pid file each one writes.
# The sourcing script defines `say`.

pid_file_alive() { # pid_file_alive FILE: the process FILE names runs
  [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

stop_pid_file() { # stop_pid_file FILE NAME: TERM the process FILE names, KILL it after 30 s; FILE removed
  pid_file_alive "$1" || { rm -f "$1"; return 0; }
  local pid waited=0
  pid=$(cat "$1")
  say "stopping $2 (pid $pid)"
  kill "$pid"
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$waited" -ge 30 ]; then kill -9 "$pid" 2>/dev/null || true; break; fi
    sleep 1; waited=$((waited + 1))
  done
  rm -f "$1"
}
