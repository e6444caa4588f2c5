#!/usr/bin/env ruby
# The ruby stomp gem 1.4.10 (Debian ruby-stomp) reconnecting through an outage, configured
# the way MCollective 2.12's activemq connector configures Stomp::Connection, with a
# callback logger that records every connection attempt. Used by
# broker/tests/client_gem_timeline.rs to compare the gem with Stampede's StompGem policy.
#
#   ruby stomp_gem_timeline.rb --hosts 127.0.0.1:61613,127.0.0.1:61614 \
#        [--reconnections 1] [--initial-delay 0.01] [--max-delay 2.0] [--connect-timeout 5] \
#        [--connread-timeout 1] [--timeout 120]
#
# Without --connread-timeout the gem gets none (MCollective does not set it; the gem's
# default 0 means no limit on reading CONNECTED).
#
# Output, one JSON object per line on stdout, flushed as it happens:
#   {"event":"connecting","host":"127.0.0.1","port":61613,"t":0.0012,"delay":0.01,"attempts":0}
#   {"event":"connected",...}  {"event":"connectfail",...}  {"event":"miscerr",...,"info":"..."}
#   {"event":"ready"}          after the first connection (the test then takes the brokers down)
#   {"event":"timeline","entries":[...]}   after --reconnections reconnections; then exit 0
# `t` is seconds on the monotonic clock since the script started; `delay` and `attempts` are
# the gem's @reconnect_delay and @connection_attempts when the callback ran.
#
# Exit status: 0 = reconnected, 2 = usage or missing gem, 3 = watchdog timeout.

require 'json'
require 'optparse'

begin
  require 'stomp'
rescue LoadError
  warn 'stomp_gem_timeline.rb: cannot load the stomp gem (Debian ruby-stomp). Run scripts/install-test-deps.'
  exit 2
end

START = Process.clock_gettime(Process::CLOCK_MONOTONIC)

def now
  Process.clock_gettime(Process::CLOCK_MONOTONIC) - START
end

OUT = Mutex.new

def emit(obj)
  OUT.synchronize do
    $stdout.puts(JSON.generate(obj))
    $stdout.flush
  end
end

# The callback logger (Stomp::Connection calls these through `slog`).
class TimelineLogger
  attr_reader :entries

  def initialize
    @entries = []
    @mutex = Mutex.new
    @connected = Queue.new
  end

  # Blocks until the n-th on_connected.
  def wait_connected(n)
    n.times { @connected.pop }
  end

  def record(event, params, extra = {})
    entry = {
      'event' => event,
      'host' => params[:cur_host],
      'port' => params[:cur_port],
      't' => now,
      'delay' => params[:cur_recondelay],
      'attempts' => params[:cur_conattempts],
    }.merge(extra)
    @mutex.synchronize { @entries << entry }
    emit(entry)
  end

  def on_connecting(params)
    record('connecting', params)
  end

  def on_connected(params)
    record('connected', params)
    @connected << true
  end

  def on_connectfail(params)
    record('connectfail', params, 'failure' => params[:cur_failure].to_s)
  end

  def on_miscerr(params, info)
    record('miscerr', params, 'info' => info.to_s)
  end
end

opts = { reconnections: 1, initial_delay: 0.01, max_delay: 2.0, connect_timeout: 5, timeout: 120 }
OptionParser.new do |o|
  o.on('--hosts LIST') { |v| opts[:hosts] = v }
  o.on('--reconnections N', Integer) { |v| opts[:reconnections] = v }
  o.on('--initial-delay S', Float) { |v| opts[:initial_delay] = v }
  o.on('--max-delay S', Float) { |v| opts[:max_delay] = v }
  o.on('--connect-timeout S', Integer) { |v| opts[:connect_timeout] = v }
  o.on('--connread-timeout S', Integer) { |v| opts[:connread_timeout] = v }
  o.on('--timeout S', Integer) { |v| opts[:timeout] = v }
end.parse!
unless opts[:hosts]
  warn 'usage: stomp_gem_timeline.rb --hosts HOST:PORT,HOST:PORT [...]'
  exit 2
end

Thread.new do
  sleep opts[:timeout]
  emit('event' => 'watchdog', 't' => now)
  exit!(3)
end

hosts = opts[:hosts].split(',').map do |hp|
  host, port = hp.split(':')
  { login: '', passcode: '', host: host, port: Integer(port), ssl: false }
end

logger = TimelineLogger.new
# What MCollective 2.12's activemq connector passes (connector/activemq.rb#connect), with
# a short max_reconnect_delay so that the test takes seconds, and no heart-beats
# (heartbeat_interval unset: STOMP 1.0, no connect headers).
params = {
  hosts: hosts,
  reliable: true,
  initial_reconnect_delay: opts[:initial_delay],
  max_reconnect_delay: opts[:max_delay],
  use_exponential_back_off: true,
  back_off_multiplier: 2,
  max_reconnect_attempts: 0,
  randomize: false,
  connect_timeout: opts[:connect_timeout],
  timeout: -1,
  backup: false,
  logger: logger,
  max_hbread_fails: 2,
  max_hbrlck_fails: 0,
}
params[:connread_timeout] = opts[:connread_timeout] if opts[:connread_timeout]

conn = Stomp::Connection.new(params)
logger.wait_connected(1)
emit('event' => 'ready', 't' => now)

# Like mcollectived's receiver: block in receive; the gem reconnects inside it.
Thread.new do
  loop do
    begin
      conn.receive
    rescue StandardError => e
      emit('event' => 'receive_error', 't' => now, 'error' => e.to_s)
      sleep 0.1
    end
  end
end

logger.wait_connected(opts[:reconnections])
emit('event' => 'timeline', 'entries' => logger.entries)
exit!(0)
