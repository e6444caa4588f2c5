#!/usr/bin/env ruby
# The ruby stomp gem 1.4.10 (Debian ruby-stomp) as a producer against a shared-store
# master/slave pair: a failover pool naming both brokers, reliable (reconnecting) as
# MCollective configures Stomp::Connection, sending persistent messages one at a time and
# waiting for each RECEIPT. When the broker goes away mid-stream the gem reconnects through
# its pool; a message whose RECEIPT never came is sent again (at least once). Used by
# broker/tests/persistence.rs.
#
#   ruby stomp_gem_master_slave.rb --hosts 127.0.0.1:61613,127.0.0.1:61614 \
#        --dest /queue/p --count 400 [--timeout 120]
#
# Output, one JSON object per line on stdout, flushed as it happens:
#   {"receipted":17,"host":"127.0.0.1","port":61613}   a RECEIPT came for message 17
#   {"retry":18,"why":"..."}                            no RECEIPT: reconnect and send again
#   {"done":true}                                      every message receipted; exit 0
# Exit status: 0 = done, 2 = usage or missing gem, 3 = watchdog timeout.

require 'json'
require 'optparse'
require 'timeout'

begin
  require 'stomp'
rescue LoadError
  warn 'stomp_gem_master_slave.rb: cannot load the stomp gem (Debian ruby-stomp). Run scripts/install-test-deps.'
  exit 2
end

def emit(obj)
  $stdout.puts(JSON.generate(obj))
  $stdout.flush
end

opts = { count: 400, timeout: 120.0 }
OptionParser.new do |o|
  o.on('--hosts LIST') { |v| opts[:hosts] = v }
  o.on('--dest DEST') { |v| opts[:dest] = v }
  o.on('--count N', Integer) { |v| opts[:count] = v }
  o.on('--timeout S', Float) { |v| opts[:timeout] = v }
end.parse!
unless opts[:hosts] && opts[:dest]
  warn 'usage: stomp_gem_master_slave.rb --hosts HOST:PORT,HOST:PORT --dest DEST [--count N]'
  exit 2
end

Thread.new do
  sleep opts[:timeout]
  warn "stomp_gem_master_slave.rb: watchdog: not done after #{opts[:timeout]} s"
  exit! 3
end

hosts = opts[:hosts].split(',').map do |hp|
  host, port = hp.split(':')
  { login: '', passcode: '', host: host, port: Integer(port), ssl: false }
end
conn = Stomp::Connection.new(
  hosts: hosts,
  reliable: true,
  randomize: false,
  initial_reconnect_delay: 0.01,
  max_reconnect_delay: 0.5,
  use_exponential_back_off: true,
  back_off_multiplier: 2,
  max_reconnect_attempts: 0,
  connect_timeout: 2,
  connect_headers: { 'accept-version' => '1.1', 'host' => 'mcollective', 'heart-beat' => '0,0' }
)

seq = 0
while seq < opts[:count]
  begin
    conn.publish(opts[:dest], seq.to_s, 'persistent' => 'true', 'receipt' => "r#{seq}")
    frame = Timeout.timeout(3) { conn.receive }
    if frame && frame.command == 'RECEIPT' && frame.headers['receipt-id'] == "r#{seq}"
      emit(receipted: seq, host: conn.host, port: conn.port)
      seq += 1
    else
      emit(retry: seq, why: frame ? frame.command : 'nothing')
    end
  rescue StandardError, Timeout::Error => e
    emit(retry: seq, why: "#{e.class}: #{e.message}")
    sleep 0.05
  end
end
emit(done: true)
conn.disconnect rescue nil
exit 0
