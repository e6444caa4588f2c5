#!/usr/bin/env ruby
# Interop cases: Debian's ruby stomp gem 1.4.10 (ruby-stomp, Stomp::Connection, the API that
# MCollective uses) against a STOMP broker.
#
#   ruby stomp_rb_cases.rb --host 127.0.0.1 --port 61613 --login alice --passcode secret --case queue_competing
#   ruby stomp_rb_cases.rb --list
#
# Exit status: 0 = case passed, 1 = case failed, 2 = usage error, 3 = case timed out.
# Every wait is bounded; a watchdog thread ends the process after --timeout seconds.
# Destination names carry a random run id, so runs sharing one broker never interfere.
#
# The authz_denied case expects a broker configured so that this login may write and read
# /queue/app.> but not /queue/forbidden.> (see broker/tests/interop_ruby.rs).

require 'optparse'
require 'securerandom'
require 'timeout'

begin
  require 'stomp'
rescue LoadError
  warn 'stomp_rb_cases.rb: cannot load the stomp gem (Debian ruby-stomp). Run scripts/install-test-deps.'
  exit 2
end

WAIT = 15.0  # seconds to wait for something that must happen
QUIET = 1.0  # seconds to watch for something that must NOT happen
RUN = SecureRandom.hex(5)
START = Process.clock_gettime(Process::CLOCK_MONOTONIC)

class CaseFailure < StandardError; end

def now
  Process.clock_gettime(Process::CLOCK_MONOTONIC)
end

def check(condition, message)
  raise CaseFailure, message unless condition
end

def log(message)
  $stdout.puts(format('[rb %8.3f] %s', now - START, message))
  $stdout.flush
end

$ids = 0
def next_id(prefix)
  $ids += 1
  "#{prefix}-#{$ids}"
end

def queue(name)
  "/queue/interop.#{RUN}.#{name}"
end

def topic(name)
  "/topic/interop.#{RUN}.#{name}"
end

def bodies(messages)
  messages.map(&:body)
end

CLIENTS = []

# One Stomp::Connection, a reader thread that records what arrives, and bounded waits.
class Client
  attr_reader :name, :version, :conn, :problems, :errors, :receipts

  def initialize(opts, name, version: '1.2', login: nil, passcode: nil)
    @opts = opts
    @name = name
    @version = version
    @login = login || opts[:login]
    @passcode = passcode || opts[:passcode]
    @mutex = Mutex.new
    @cv = ConditionVariable.new
    @messages = []
    @errors = []
    @receipts = []
    @problems = []
    @closed = false
    @connected = false
    CLIENTS << self
  end

  def connect(expect_ok: true)
    connect_headers = @version == '1.0' ? {} : { 'accept-version' => @version, 'host' => 'localhost' }
    params = {
      hosts: [{ login: @login, passcode: @passcode, host: @opts[:host], port: @opts[:port], ssl: false }],
      reliable: false, connect_timeout: 10, connread_timeout: WAIT, parse_timeout: 10,
      connect_headers: connect_headers
    }
    @conn = Stomp::Connection.new(params)
    frame = @conn.connection_frame
    @connected = !frame.nil? && frame.command == Stomp::CMD_CONNECTED
    @errors << frame if frame && frame.command == Stomp::CMD_ERROR
    start_reader
    if expect_ok
      check(@connected, "#{@name}: CONNECT as #{@login.inspect} failed: #{frame && [frame.command, frame.headers, frame.body].inspect}")
      check(@conn.protocol == @version, "#{@name}: asked for STOMP #{@version}, got #{@conn.protocol}")
    end
    self
  end

  def connected?
    @connected
  end

  def start_reader
    @reader = Thread.new do
      Thread.current.report_on_exception = false
      begin
        loop do
          m = @conn.receive
          break if m.nil?

          record(m)
        end
      rescue Stomp::Error::NoCurrentConnection, IOError, Errno::ECONNRESET, Errno::EPIPE
        nil # the socket was closed (by us or by the broker)
      rescue StandardError => e
        @mutex.synchronize { @problems << "#{@name}: reader failed: #{e.class}: #{e.message}" }
      ensure
        @mutex.synchronize do
          @closed = true
          @cv.broadcast
        end
      end
    end
  end

  def record(m)
    @mutex.synchronize do
      case m.command
      when Stomp::CMD_MESSAGE
        check_raw(m)
        @messages << m
      when Stomp::CMD_ERROR then @errors << m
      when Stomp::CMD_RECEIPT then @receipts << m.headers['receipt-id']
      else @problems << "#{@name}: unexpected frame #{m.command}"
      end
      @cv.broadcast
    end
  end

  # Checks on the MESSAGE as it came off the wire: exactly one content-length, no repeated
  # header, destination/message-id (and subscription on 1.1+) present.
  def check_raw(m)
    raw = m.original.to_s.b.sub(/\A[\r\n]+/, '')
    head = raw.split(/\r?\n\r?\n/, 2).first.to_s
    lines = head.split(/\r?\n/)[1..] || []
    keys = lines.map { |l| l.split(':', 2).first }
    dups = keys.select { |k| keys.count(k) > 1 }.uniq
    @problems << "#{@name}: MESSAGE repeats header(s) #{dups.inspect}: #{lines.inspect}" unless dups.empty?
    count = keys.count('content-length')
    @problems << "#{@name}: MESSAGE has #{count} content-length headers (want 1): #{lines.inspect}" if count != 1
    required = %w[destination message-id]
    required << 'subscription' unless @version == '1.0'
    required.each do |k|
      @problems << "#{@name}: MESSAGE lacks #{k}: #{lines.inspect}" unless keys.include?(k)
    end
    # The gem itself verified that a NUL follows exactly content-length body bytes.
    cl = m.headers['content-length']
    return if cl.is_a?(String) && cl.to_i == m.body.bytesize

    @problems << "#{@name}: content-length #{cl.inspect} vs body of #{m.body.bytesize} bytes"
  end

  def wait_for(what, timeout = WAIT)
    deadline = now + timeout
    @mutex.synchronize do
      until yield
        remaining = deadline - now
        if remaining <= 0
          raise CaseFailure, "#{@name}: timed out after #{timeout.round}s waiting for #{what}; " \
                             "got messages #{bodies(@messages).first(20).inspect}, " \
                             "errors #{@errors.map { |e| [e.headers, e.body] }.inspect}"
        end
        @cv.wait(@mutex, remaining)
      end
    end
  end

  def messages
    @mutex.synchronize { @messages.dup }
  end

  def closed?
    @mutex.synchronize { @closed }
  end

  def wait_messages(count, timeout = WAIT)
    wait_for("#{count} message(s)", timeout) { @messages.size >= count }
    messages
  end

  def wait_receipt(rid)
    wait_for("RECEIPT #{rid}") { @receipts.include?(rid) }
  end

  def wait_error
    wait_for('an ERROR frame') { !@errors.empty? }
    @mutex.synchronize { @errors.first }
  end

  def wait_closed(what = 'the broker to close the socket')
    wait_for(what) { @closed }
  end

  # Asserts that no further MESSAGE arrives within `seconds`.
  def quiet(what, seconds = QUIET)
    before = messages.size
    sleep(seconds)
    extra = messages[before..]
    check(extra.empty?, "#{@name}: expected no #{what}, but got #{bodies(extra).inspect}")
  end

  def with_receipt(headers)
    rid = next_id('r')
    yield headers.merge(receipt: rid)
    wait_receipt(rid)
  end

  def publish(destination, body, headers = {})
    with_receipt(headers) { |h| @conn.publish(destination, body, h) }
  end

  def subscribe(destination, headers = {}, sub_id = nil)
    headers = headers.dup
    # STOMP 1.0 subscriptions go without an id, exactly as MCollective sends them.
    headers[:id] = sub_id || next_id('sub') unless @version == '1.0'
    with_receipt(headers) { |h| @conn.subscribe(destination, h) }
    headers[:id]
  end

  def ack(m, headers = {})
    with_receipt(headers) do |h|
      case @version
      when '1.2' then @conn.ack(m.headers['ack'], h)
      when '1.1' then @conn.ack(m.headers['message-id'], h.merge(subscription: m.headers['subscription']))
      else @conn.ack(m.headers['message-id'], h)
      end
    end
  end

  def nack(m, headers = {})
    with_receipt(headers) do |h|
      case @version
      when '1.2' then @conn.nack(m.headers['ack'], h)
      when '1.1' then @conn.nack(m.headers['message-id'], h.merge(subscription: m.headers['subscription']))
      else raise CaseFailure, 'NACK needs STOMP 1.1+'
      end
    end
  end

  def begin_tx(tx)
    with_receipt({}) { |h| @conn.begin(tx, h) }
  end

  def commit(tx)
    with_receipt({}) { |h| @conn.commit(tx, h) }
  end

  def abort_tx(tx)
    with_receipt({}) { |h| @conn.abort(tx, h) }
  end

  # DISCONNECT (no receipt: the gem would read it on this thread), then wait for the close.
  # The broker may close the socket so quickly after DISCONNECT that the gem's reader
  # thread, seeing EOF, closes the stream while this thread is still inside the write
  # (IOError "stream closed in another thread"). That is the expected close, provided the
  # broker sent no ERROR first.
  def disconnect
    begin
      @conn.disconnect
    rescue IOError => e
      wait_closed('the reader to see the close that raced DISCONNECT')
      raise unless @errors.empty?
      log("DISCONNECT raced the broker's close (#{e.message}); treating it as closed")
    end
    wait_closed('the connection to close after DISCONNECT')
  end

  # DISCONNECT with a receipt, read by the gem itself: the reader thread is stopped first.
  def disconnect_with_receipt(rid)
    @reader.kill
    @reader.join(5)
    Timeout.timeout(WAIT) { @conn.disconnect(receipt: rid) }
    @conn.disconnect_receipt
  rescue Timeout::Error
    raise CaseFailure, "#{@name}: no RECEIPT for DISCONNECT within #{WAIT}s"
  end

  # Drop the TCP connection without DISCONNECT (a crashed client).
  def drop
    @conn.instance_variable_get(:@socket)&.close
    wait_closed('the reader to notice the dropped socket')
  end

  def close_quietly
    @reader&.kill
    @conn&.instance_variable_get(:@socket)&.close
  rescue StandardError
    nil
  end
end

CASES = {}
DOCS = {}

def defcase(name, doc, &block)
  CASES[name] = block
  DOCS[name] = doc
end

defcase 'queue_competing', '2 consumers on one queue share 10 messages: none lost, none duplicated, both get some.' do |o|
  q = queue('competing')
  consumers = [1, 2].map { |i| Client.new(o, "consumer#{i}").connect }
  consumers.each { |c| c.subscribe(q) }
  producer = Client.new(o, 'producer').connect
  10.times { |i| producer.conn.publish(q, "m#{i}") }
  producer.publish(q, 'last')
  deadline = now + WAIT
  sleep 0.05 while consumers.sum { |c| c.messages.size } < 11 && now < deadline
  sleep QUIET
  got = consumers.map { |c| bodies(c.messages) }
  all = got.flatten
  check(all.sort == (0..9).map { |i| "m#{i}" }.push('last').sort,
        "want m0..m9 and last exactly once across both consumers, got #{got.inspect}")
  check(got.all? { |g| !g.empty? }, "both competing consumers should get messages, got #{got.inspect}")
  consumers.each do |c|
    c.messages.each { |m| check(m.headers['destination'] == q, "destination #{m.headers['destination'].inspect}") }
  end
  log("split #{got[0].size}/#{got[1].size}")
end

defcase 'queue_buffered', 'Messages sent before any consumer exists are kept and delivered in order.' do |o|
  q = queue('buffered')
  producer = Client.new(o, 'producer').connect
  5.times { |i| producer.publish(q, "b#{i}") }
  producer.disconnect
  consumer = Client.new(o, 'consumer', version: '1.1').connect
  consumer.subscribe(q)
  got = bodies(consumer.wait_messages(5))
  check(got == (0..4).map { |i| "b#{i}" }, "want b0..b4 in order, got #{got.inspect}")
  consumer.quiet('further messages')
end

defcase 'topic_fanout', 'Every topic subscriber gets every message; nothing is kept without subscribers.' do |o|
  t = topic('fanout')
  producer = Client.new(o, 'producer').connect
  producer.publish(t, 'before-any-subscriber')
  subs = [%w[subscriber1 1.0], %w[subscriber2 1.1]].map { |n, v| Client.new(o, n, version: v).connect }
  subs.each { |s| s.subscribe(t) }
  5.times { |i| producer.publish(t, "t#{i}") }
  subs.each do |s|
    got = bodies(s.wait_messages(5))
    check(got == (0..4).map { |i| "t#{i}" },
          "#{s.name}: want t0..t4 (and not the message sent before it subscribed), got #{got.inspect}")
    s.quiet('further messages')
  end
end

defcase 'wildcard_star', "'*' matches exactly one name segment." do |o|
  base = "interop.#{RUN}.star"
  sub = Client.new(o, 'subscriber').connect
  sub.subscribe("/topic/#{base}.*")
  producer = Client.new(o, 'producer').connect
  %w[a a.b b].each { |s| producer.publish("/topic/#{base}.#{s}", s) }
  producer.publish("/topic/interop.#{RUN}.other.a", 'other')
  got = sub.wait_messages(2)
  sub.quiet('messages for a.b or other')
  # Sorted: the contract orders messages per destination, and these are two destinations.
  check(bodies(got).sort == %w[a b], "'#{base}.*' should match a and b only, got #{bodies(got).inspect}")
  got.each do |m|
    check(m.headers['destination'] == "/topic/#{base}.#{m.body}",
          "MESSAGE destination should be the concrete destination, got #{m.headers['destination'].inspect} for #{m.body}")
  end
end

defcase 'wildcard_gt', "'>' matches one or more trailing segments, on topics and on queues." do |o|
  base = "interop.#{RUN}.gt"
  sub = Client.new(o, 'subscriber').connect
  sub.subscribe("/topic/#{base}.>")
  qsub = Client.new(o, 'queue-subscriber', version: '1.0').connect
  qsub.subscribe("/queue/#{base}.>")
  producer = Client.new(o, 'producer').connect
  %w[a a.b a.b.c].each { |s| producer.publish("/topic/#{base}.#{s}", s) }
  producer.publish("/topic/interop.#{RUN}.other.a", 'other')
  producer.publish("/queue/#{base}.x.y", 'queued')
  got = sub.wait_messages(3)
  sub.quiet('a message for another prefix')
  check(bodies(got).sort == %w[a a.b a.b.c], "'#{base}.>' should match a, a.b, a.b.c; got #{bodies(got).inspect}")
  got.each do |m|
    check(m.headers['destination'] == "/topic/#{base}.#{m.body}",
          "MESSAGE destination should be the concrete destination, got #{m.headers['destination'].inspect} for #{m.body}")
  end
  qgot = qsub.wait_messages(1)
  check(bodies(qgot) == ['queued'], "queue wildcard subscriber got #{bodies(qgot).inspect}")
  check(qgot[0].headers['destination'] == "/queue/#{base}.x.y", "destination #{qgot[0].headers['destination']}")
end

defcase 'selector_equality', 'String equality selectors, on a topic and on a queue (the MCollective mc_identity pattern).' do |o|
  t = topic('colors')
  red = Client.new(o, 'red').connect
  red.subscribe(t, selector: "color = 'red'")
  all = Client.new(o, 'all').connect
  all.subscribe(t)
  producer = Client.new(o, 'producer').connect
  %w[red blue red green].each_with_index { |c, i| producer.publish(t, "#{c}-#{i}", color: c) }
  producer.publish(t, 'uncoloured')
  check(bodies(all.wait_messages(5)) == %w[red-0 blue-1 red-2 green-3 uncoloured],
        "unfiltered subscriber got #{bodies(all.messages).inspect}")
  got = red.wait_messages(2)
  red.quiet('non-red messages')
  check(bodies(got) == %w[red-0 red-2], "selector color = 'red' got #{bodies(got).inspect}")

  # Directed queue messages as MCollective sends them (STOMP 1.0, no subscription id). The
  # message for node2 sits at the head of the queue while only node1 has a consumer.
  q = queue('nodes')
  node1 = Client.new(o, 'node1', version: '1.0').connect
  node1.subscribe(q, selector: "mc_identity = 'node1'")
  producer.publish(q, 'for-node2', mc_identity: 'node2')
  producer.publish(q, 'for-node1', mc_identity: 'node1')
  got = node1.wait_messages(1)
  node1.quiet("node2's message at node1")
  check(bodies(got) == ['for-node1'], "node1 got #{bodies(got).inspect}")
  check(got[0].headers['mc_identity'] == 'node1', "mc_identity header #{got[0].headers.inspect}")
  node2 = Client.new(o, 'node2', version: '1.0').connect
  node2.subscribe(q, selector: "mc_identity = 'node2'")
  got = node2.wait_messages(1)
  check(bodies(got) == ['for-node2'], "node2 got #{bodies(got).inspect}")
end

defcase 'selector_numeric', '`n > 5` compares numerically although STOMP header values are strings.' do |o|
  t = topic('numbers')
  sub = Client.new(o, 'subscriber').connect
  sub.subscribe(t, selector: 'n > 5')
  producer = Client.new(o, 'producer').connect
  %w[3 7 10 5 42 -1].each { |n| producer.publish(t, "n=#{n}", n: n) }
  producer.publish(t, 'no-n')
  got = sub.wait_messages(3)
  sub.quiet('messages with n <= 5 or without n')
  check(bodies(got) == %w[n=7 n=10 n=42],
        "selector n > 5 should pick 7, 10, 42 (10 > 5 numerically, not as text); got #{bodies(got).inspect}")
end

# A fresh consumer drains q; it must get exactly `want`, each with redelivered:true.
def redelivery_check(o, q, want)
  consumer = Client.new(o, 'second-consumer').connect
  consumer.subscribe(q)
  got = consumer.wait_messages(want.size)
  consumer.quiet('more messages')
  check(bodies(got) == want, "after disconnect the queue should redeliver #{want.inspect}, got #{bodies(got).inspect}")
  got.each do |m|
    check(m.headers['redelivered'] == 'true', "redelivered #{m.body.inspect} lacks redelivered:true: #{m.headers.inspect}")
  end
end

def queue_holds_only_marker(o, q, producer)
  checker = Client.new(o, 'checker').connect
  checker.subscribe(q)
  producer.publish(q, 'marker')
  got = checker.wait_messages(1)
  checker.quiet('leftover messages')
  check(bodies(got) == ['marker'], "queue should hold nothing but the marker, got #{bodies(got).inspect}")
end

defcase 'ack_auto', 'ack:auto messages count as consumed on delivery: nothing comes back after a disconnect.' do |o|
  q = queue('ack-auto')
  producer = Client.new(o, 'producer').connect
  first = Client.new(o, 'first-consumer', version: '1.0').connect
  first.subscribe(q, ack: 'auto')
  3.times { |i| producer.publish(q, "a#{i}") }
  check(bodies(first.wait_messages(3)) == %w[a0 a1 a2], "got #{bodies(first.messages).inspect}")
  first.disconnect
  queue_holds_only_marker(o, q, producer)
end

defcase 'ack_client', 'ack:client is cumulative: ACK of the 2nd message acks the 1st too; the rest is redelivered.' do |o|
  q = queue('ack-client')
  producer = Client.new(o, 'producer').connect
  4.times { |i| producer.publish(q, "c#{i}") }
  first = Client.new(o, 'first-consumer', version: '1.0').connect
  first.subscribe(q, ack: 'client')
  got = first.wait_messages(4)
  check(bodies(got) == %w[c0 c1 c2 c3], "got #{bodies(got).inspect}")
  first.ack(got[1])
  first.drop
  redelivery_check(o, q, %w[c2 c3])
end

defcase 'ack_client_individual', 'ack:client-individual acks one message only; unacked ones are redelivered after disconnect.' do |o|
  q = queue('ack-individual')
  producer = Client.new(o, 'producer').connect
  4.times { |i| producer.publish(q, "i#{i}") }
  first = Client.new(o, 'first-consumer', version: '1.1').connect
  first.subscribe(q, ack: 'client-individual')
  got = first.wait_messages(4)
  check(bodies(got) == %w[i0 i1 i2 i3], "got #{bodies(got).inspect}")
  first.ack(got[1])
  first.ack(got[3])
  first.disconnect
  redelivery_check(o, q, %w[i0 i2])
end

defcase 'nack_requeue', 'NACK puts the message back; it is redelivered with redelivered:true.' do |o|
  q = queue('nack')
  producer = Client.new(o, 'producer').connect
  producer.publish(q, 'nack-me')
  consumer = Client.new(o, 'consumer', version: '1.2').connect
  consumer.subscribe(q, ack: 'client-individual')
  first = consumer.wait_messages(1).first
  check(first.body == 'nack-me', "got #{first.body.inspect}")
  consumer.nack(first)
  got = consumer.wait_messages(2)
  check(got[1].body == 'nack-me', "after NACK want the same message again, got #{bodies(got).inspect}")
  check(got[1].headers['redelivered'] == 'true', "redelivery lacks redelivered:true: #{got[1].headers.inspect}")
  consumer.ack(got[1])
  consumer.disconnect
  queue_holds_only_marker(o, q, producer)
end

defcase 'nack_dlq', 'NACK with requeue:false sends the message to /queue/ActiveMQ.DLQ instead of back to the queue.' do |o|
  q = queue('nack-dlq')
  producer = Client.new(o, 'producer').connect
  # persistent:true because ActiveMQ (the reference broker) dead-letters persistent messages only.
  producer.publish(q, 'poison', interop_run: RUN, persistent: 'true')
  consumer = Client.new(o, 'consumer', version: '1.1').connect
  consumer.subscribe(q, ack: 'client-individual')
  first = consumer.wait_messages(1).first
  consumer.nack(first, requeue: 'false')
  consumer.quiet('a redelivery after NACK requeue:false')
  dlq = Client.new(o, 'dlq-reader').connect
  # The DLQ is shared by everything on the broker: only look at this run's message.
  dlq.subscribe('/queue/ActiveMQ.DLQ', selector: "interop_run = '#{RUN}'")
  got = dlq.wait_messages(1)
  check(bodies(got) == ['poison'], "DLQ got #{bodies(got).inspect}")
  consumer.disconnect
  queue_holds_only_marker(o, q, producer)
end

defcase 'tx_commit', 'SENDs inside a transaction are delivered only at COMMIT, all of them, in order.' do |o|
  q = queue('tx-commit')
  consumer = Client.new(o, 'consumer').connect
  consumer.subscribe(q)
  producer = Client.new(o, 'producer', version: '1.0').connect
  tx = next_id('tx')
  producer.begin_tx(tx)
  3.times { |i| producer.publish(q, "tx#{i}", transaction: tx) }
  consumer.quiet('messages before COMMIT')
  producer.commit(tx)
  got = consumer.wait_messages(3)
  check(bodies(got) == %w[tx0 tx1 tx2], "after COMMIT got #{bodies(got).inspect}")
  consumer.quiet('duplicates')
end

defcase 'tx_abort', 'SENDs inside an aborted transaction are never delivered.' do |o|
  q = queue('tx-abort')
  consumer = Client.new(o, 'consumer').connect
  consumer.subscribe(q)
  producer = Client.new(o, 'producer').connect
  tx = next_id('tx')
  producer.begin_tx(tx)
  3.times { |i| producer.publish(q, "aborted#{i}", transaction: tx) }
  producer.abort_tx(tx)
  producer.publish(q, 'after-abort')
  got = consumer.wait_messages(1)
  consumer.quiet('aborted messages')
  check(bodies(got) == ['after-abort'], "aborted SENDs were delivered: #{bodies(got).inspect}")
end

defcase 'tx_ack', 'An ACK inside a committed transaction counts; one inside an aborted transaction does not.' do |o|
  q = queue('tx-ack')
  producer = Client.new(o, 'producer').connect
  producer.publish(q, 'k0')
  producer.publish(q, 'k1')
  consumer = Client.new(o, 'consumer', version: '1.2').connect
  consumer.subscribe(q, ack: 'client-individual')
  got = consumer.wait_messages(2)
  check(bodies(got) == %w[k0 k1], "got #{bodies(got).inspect}")
  t1 = next_id('tx')
  t2 = next_id('tx')
  consumer.begin_tx(t1)
  consumer.ack(got[0], transaction: t1)
  consumer.commit(t1)
  consumer.begin_tx(t2)
  consumer.ack(got[1], transaction: t2)
  consumer.abort_tx(t2)
  consumer.disconnect
  redelivery_check(o, q, ['k1'])
end

defcase 'receipts', 'Every frame with a receipt header gets a RECEIPT with the same receipt-id.' do |o|
  q = queue('receipts')
  c = Client.new(o, 'client', version: '1.2').connect
  ids = []
  expect = lambda do |rid|
    ids << rid
    c.wait_receipt(rid)
  end
  c.conn.subscribe(q, id: 's1', ack: 'client-individual', receipt: 'r-subscribe')
  expect.call('r-subscribe')
  c.conn.publish(q, 'hello', receipt: 'r-send')
  expect.call('r-send')
  msg = c.wait_messages(1).first
  c.conn.begin('t1', receipt: 'r-begin')
  expect.call('r-begin')
  c.conn.publish(q, 'in-tx', receipt: 'r-send-tx', transaction: 't1')
  expect.call('r-send-tx')
  c.conn.ack(msg.headers['ack'], transaction: 't1', receipt: 'r-ack')
  expect.call('r-ack')
  c.conn.commit('t1', receipt: 'r-commit')
  expect.call('r-commit')
  c.conn.begin('t2', receipt: 'r-begin2')
  expect.call('r-begin2')
  c.conn.abort('t2', receipt: 'r-abort')
  expect.call('r-abort')
  c.conn.unsubscribe(q, id: 's1', receipt: 'r-unsubscribe')
  expect.call('r-unsubscribe')
  # A receipt id with characters that need escaping in STOMP 1.1+ headers.
  c.conn.publish(q, 'odd', receipt: 'r:odd\\id')
  expect.call('r:odd\\id')
  check(c.receipts.sort == ids.sort, "want exactly one RECEIPT per request #{ids.inspect}, got #{c.receipts.inspect}")
  receipt = c.disconnect_with_receipt('r-disconnect')
  check(receipt && receipt.command == 'RECEIPT' && receipt.headers['receipt-id'] == 'r-disconnect',
        "DISCONNECT receipt: #{receipt && [receipt.command, receipt.headers].inspect}")
end

BINARY = (((0..255).map(&:chr).join.b * 4) + "\x00\x00tail\x00".b).freeze

defcase 'binary_body', 'A body with all 256 byte values and NULs round-trips byte-exact (content-length framing).' do |o|
  q = queue('binary')
  t = topic('binary')
  consumer = Client.new(o, 'consumer', version: '1.0').connect
  consumer.subscribe(q)
  consumer.subscribe(t)
  producer = Client.new(o, 'producer', version: '1.1').connect
  producer.publish(q, BINARY.dup, 'content-type' => 'application/octet-stream')
  producer.publish(t, BINARY.reverse)
  producer.publish(q, "\x00".b)
  got = consumer.wait_messages(3)
  by_dest = Hash.new { |h, k| h[k] = [] }
  got.each { |m| by_dest[m.headers['destination']] << m.body.b }
  check(by_dest[q][0] == BINARY, "queue body differs: sent #{BINARY.bytesize} bytes, got #{by_dest[q].map(&:bytesize).inspect}")
  check(by_dest[t] == [BINARY.reverse], "topic body differs: got #{by_dest[t].map(&:bytesize).inspect} bytes")
  check(by_dest[q][1..] == ["\x00".b], "a lone NUL body did not round-trip: #{by_dest[q].inspect[0, 200]}")
end

defcase 'custom_headers', 'Custom SEND headers reach the consumer unchanged, next to destination/message-id/subscription.' do |o|
  q = queue('headers')
  consumer = Client.new(o, 'consumer', version: '1.1').connect
  sub_id = consumer.subscribe(q, {}, 'my-sub')
  producer = Client.new(o, 'producer', version: '1.2').connect
  custom = {
    'x-trace-id' => 'abc-123',
    'mc_sender' => 'interop-rb',
    'mc_identity' => 'node-07',
    'reply-to' => "/queue/interop.#{RUN}.replies",
    'x-with-colon' => 'a:b:c',
    'x-with-spaces' => '  padded value ',
    'x-unicode' => "h\u00e9llo \u2603",
    'x-backslash' => 'c:\\dir\\file'
  }
  producer.publish(q, 'with headers', custom.merge('content-type' => 'text/x-interop'))
  msg = consumer.wait_messages(1).first
  custom.each do |k, v|
    check(msg.headers[k] == v, "header #{k}: sent #{v.inspect}, got #{msg.headers[k].inspect} (all #{msg.headers.inspect})")
  end
  check(msg.headers['content-type'].to_s.start_with?('text/x-interop'), "content-type #{msg.headers['content-type'].inspect}")
  check(msg.headers['destination'] == q, "destination #{msg.headers['destination'].inspect}")
  check(msg.headers['subscription'] == sub_id, "subscription #{msg.headers['subscription'].inspect}, want #{sub_id}")
  check(!msg.headers['message-id'].to_s.empty?, 'no message-id')
  check(msg.body == 'with headers', "body #{msg.body.inspect}")

  # MCollective's own shape: STOMP 1.0, no subscription id, the gem's content-type on every frame.
  q10 = queue('headers10')
  c10 = Client.new(o, 'consumer10', version: '1.0').connect
  c10.subscribe(q10)
  p10 = Client.new(o, 'producer10', version: '1.0').connect
  p10.publish(q10, 'mco-like', 'reply-to' => "/queue/interop.#{RUN}.reply.client_1.1", 'mc_sender' => 'node-01',
                               'timestamp' => '1700000000000', 'expires' => ((Time.now.to_i + 70) * 1000).to_s)
  m10 = c10.wait_messages(1).first
  check(m10.headers['reply-to'] == "/queue/interop.#{RUN}.reply.client_1.1", "reply-to #{m10.headers['reply-to'].inspect}")
  check(m10.headers['mc_sender'] == 'node-01', "mc_sender #{m10.headers['mc_sender'].inspect}")
  check(m10.headers['timestamp'] == '1700000000000', "timestamp #{m10.headers['timestamp'].inspect}")
end

defcase 'priority', 'Queued messages are delivered highest priority first (FIFO within a priority).' do |o|
  q = queue('priority')
  producer = Client.new(o, 'producer').connect
  [['p1', 1], ['p9a', 9], ['p4', 4], ['p0', 0], ['p9b', 9], ['p7', 7]].each do |body, prio|
    producer.publish(q, body, priority: prio.to_s)
  end
  consumer = Client.new(o, 'consumer').connect
  consumer.subscribe(q)
  got = consumer.wait_messages(6)
  check(bodies(got) == %w[p9a p9b p7 p4 p1 p0], "priority order wrong: #{bodies(got).inspect}")
  check(got[0].headers['priority'] == '9', "priority header #{got[0].headers['priority'].inspect}")
end

defcase 'expires', 'A message whose absolute `expires` (epoch ms) has passed is never delivered.' do |o|
  q = queue('expires')
  producer = Client.new(o, 'producer').connect
  ms = (Time.now.to_f * 1000).to_i
  producer.publish(q, 'already-expired', expires: (ms - 60_000).to_s)
  producer.publish(q, 'expires-soon', expires: (ms + 1500).to_s)
  producer.publish(q, 'long-lived', expires: (ms + 600_000).to_s)
  producer.publish(q, 'no-expiry')
  sleep 3.0
  consumer = Client.new(o, 'consumer').connect
  consumer.subscribe(q)
  got = consumer.wait_messages(2)
  consumer.quiet('expired messages')
  check(bodies(got) == %w[long-lived no-expiry], "want only unexpired messages, got #{bodies(got).inspect}")
  t = topic('expires')
  consumer.subscribe(t)
  producer.publish(t, 'expired-on-topic', expires: ((Time.now.to_f * 1000).to_i - 60_000).to_s)
  producer.publish(t, 'live-on-topic')
  got = consumer.wait_messages(3)[2..]
  consumer.quiet('expired topic message')
  check(bodies(got) == ['live-on-topic'], "topic delivered #{bodies(got).inspect}")
end

defcase 'auth_failure', 'Wrong passcode: an ERROR frame with a message header, then the broker closes the socket.' do |o|
  [['bad-passcode', '1.2', o[:login], "#{o[:passcode]}-wrong"],
   ['unknown-user', '1.0', "nobody-#{RUN}", 'x']].each do |name, version, login, passcode|
    c = Client.new(o, name, version: version, login: login, passcode: passcode).connect(expect_ok: false)
    check(!c.connected?, "#{name}: CONNECT with bad credentials was accepted: #{c.conn.connection_frame.headers.inspect}")
    err = c.wait_error
    check(!err.headers['message'].to_s.empty?, "#{name}: ERROR without a message header: #{err.headers.inspect}")
    c.wait_closed
    log("#{name}: ERROR message #{err.headers['message'].inspect}")
  end
  Client.new(o, 'good-login').connect
end

defcase 'authz_denied', 'A denied SEND/SUBSCRIBE gets an ERROR naming destination and operation; the connection stays usable.' do |o|
  forbidden = "/queue/forbidden.#{RUN}"
  allowed = "/queue/app.interop.#{RUN}"
  c = Client.new(o, 'client', version: '1.1').connect
  c.conn.publish(forbidden, 'nope', receipt: 'r-denied-send')
  err = c.wait_error
  text = "#{err.headers['message']} #{err.body}"
  check(text.include?("forbidden.#{RUN}"), "ERROR should name the destination: #{err.headers.inspect} / #{err.body.inspect}")
  check(text.downcase.include?('write'), "ERROR should name the operation 'write': #{err.headers.inspect} / #{err.body.inspect}")
  check(err.headers['receipt-id'] == 'r-denied-send', "ERROR should carry receipt-id r-denied-send: #{err.headers.inspect}")
  c.conn.subscribe(forbidden, id: 'denied-sub', receipt: 'r-denied-sub')
  c.wait_for('a second ERROR') { c.errors.size >= 2 }
  err = c.errors[1]
  text = "#{err.headers['message']} #{err.body}"
  check(text.include?("forbidden.#{RUN}") && text.downcase.include?('read'),
        "SUBSCRIBE denial should name destination and 'read': #{err.headers.inspect} / #{err.body.inspect}")
  check(err.headers['receipt-id'] == 'r-denied-sub', "receipt-id #{err.headers.inspect}")
  check(!c.closed?, 'broker closed the connection after a denial')
  c.subscribe(allowed)
  c.publish(allowed, 'allowed')
  got = c.wait_messages(1)
  check(bodies(got) == ['allowed'], "allowed queue delivered #{bodies(got).inspect}")
  check(!c.receipts.include?('r-denied-send'), 'a denied SEND must not also get a RECEIPT')
end

# ----------------------------------------------------------------------------- runner

opts = { host: '127.0.0.1', port: nil, login: '', passcode: '', case: nil, list: false, timeout: 90.0 }
parser = OptionParser.new do |p|
  p.banner = 'usage: stomp_rb_cases.rb --port PORT --case NAME [--host H] [--login L] [--passcode P] [--timeout S] | --list'
  p.on('--host HOST') { |v| opts[:host] = v }
  p.on('--port PORT', Integer) { |v| opts[:port] = v }
  p.on('--login LOGIN') { |v| opts[:login] = v }
  p.on('--passcode PASSCODE') { |v| opts[:passcode] = v }
  p.on('--case NAME') { |v| opts[:case] = v }
  p.on('--list') { opts[:list] = true }
  p.on('--timeout SECONDS', Float) { |v| opts[:timeout] = v }
end
begin
  parser.parse!(ARGV)
rescue OptionParser::ParseError => e
  warn "#{e.message}\n#{parser.banner}"
  exit 2
end

if opts[:list]
  CASES.each_key { |name| puts format('%-22s %s', name, DOCS[name]) }
  exit 0
end
if opts[:case].nil? || opts[:port].nil?
  warn "--port and --case are required (or --list)\n#{parser.banner}"
  exit 2
end
body = CASES[opts[:case]]
unless body
  warn "unknown case #{opts[:case].inspect}; known: #{CASES.keys.join(', ')}"
  exit 2
end

Thread.new do
  sleep opts[:timeout]
  $stdout.puts "FAIL #{opts[:case]}: timed out after #{opts[:timeout].round}s (watchdog)"
  $stdout.flush
  exit!(3)
end

log("case #{opts[:case]} against #{opts[:host]}:#{opts[:port]} as #{opts[:login].inspect} (run id #{RUN})")
status = 0
begin
  body.call(opts)
  problems = CLIENTS.flat_map(&:problems)
  check(problems.empty?, "MESSAGE frame problems:\n  #{problems.join("\n  ")}")
  puts "PASS #{opts[:case]}"
rescue CaseFailure => e
  puts "FAIL #{opts[:case]}: #{e.message}"
  status = 1
rescue StandardError => e
  puts "FAIL #{opts[:case]}: unexpected #{e.class}: #{e.message}\n  #{e.backtrace.first(8).join("\n  ")}"
  status = 1
end
CLIENTS.each(&:close_quietly)
$stdout.flush
exit!(status)
