# MCollective's Redis connector channel layout, driven by the redis gem (Debian's
# ruby-redis, which that connector is built on), against stampede-broker's Redis listener.
#
#   ruby redis_gem_mcollective.rb PORT PASSWORD
#
# A "node" subscribes to the collective's broadcast channel and its direct channel, a
# "client" publishes YAML-wrapped requests ({:body, :headers} with reply-to, as the
# connector wraps them) and collects the replies on its reply channel; a monitor
# PSUBSCRIBEs to every server channel. Prints "ok ..." lines and exits 0, or raises.
require "redis"
require "yaml"
require "timeout"

port = Integer(ARGV.fetch(0))
password = ARGV.fetch(1)
opts = { host: "127.0.0.1", port: port, password: password, timeout: 5 }

# A wrong password is refused in Redis's own words.
begin
  Redis.new(**opts, password: "wrong").ping
  raise "a wrong password was accepted"
rescue Redis::CommandError => e
  raise "unexpected refusal: #{e.message}" unless e.message =~ /WRONGPASS|invalid/i
  puts "ok wrong password refused: #{e.message}"
end

raise "PING failed" unless Redis.new(**opts).ping == "PONG"
puts "ok ping"

def wrap(body, headers)
  YAML.dump({ :body => body, :headers => headers })
end

seen = Queue.new
ready = Queue.new
node = Thread.new do
  Redis.new(**opts).subscribe("mcollective::server::agents",
                              "mcollective::server::direct::node1") do |on|
    on.subscribe { |_ch, count| ready << :node if count == 2 }
    on.message do |channel, raw|
      msg = YAML.load(raw)
      reply_to = msg[:headers]["reply-to"]
      Redis.new(**opts).publish(reply_to, wrap("pong #{msg[:body]} via #{channel}", {}))
    end
  end
end
monitor = Thread.new do
  Redis.new(**opts).psubscribe("mcollective::server::*") do |on|
    on.psubscribe { |_p, _count| ready << :monitor }
    on.pmessage { |pattern, channel, _raw| seen << [pattern, channel] }
  end
end

replies = Queue.new
client = Thread.new do
  Redis.new(**opts).subscribe("mcollective::reply::client::4242") do |on|
    on.subscribe { |_ch, _count| ready << :client }
    on.message { |_ch, raw| replies << YAML.load(raw)[:body] }
  end
end

Timeout.timeout(10) { 3.times { ready.pop } }
puts "ok subscribed"

publisher = Redis.new(**opts)
headers = { "reply-to" => "mcollective::reply::client::4242" }
publisher.publish("mcollective::server::agents", wrap("broadcast", headers))
publisher.publish("mcollective::server::direct::node1", wrap("direct", headers))
# Neither the node nor the monitor may see a channel outside their subscriptions.
publisher.publish("mcollective::elsewhere", wrap("stray", headers))

got = Timeout.timeout(10) { [replies.pop, replies.pop] }.sort
want = ["pong broadcast via mcollective::server::agents",
        "pong direct via mcollective::server::direct::node1"]
raise "replies #{got.inspect}, want #{want.inspect}" unless got == want
puts "ok replies: #{got.join(' | ')}"

patterns = Timeout.timeout(10) { [seen.pop, seen.pop] }.sort
want = [["mcollective::server::*", "mcollective::server::agents"],
        ["mcollective::server::*", "mcollective::server::direct::node1"]]
raise "monitor saw #{patterns.inspect}" unless patterns == want
sleep 0.3
raise "a stray message reached a subscriber" unless replies.empty? && seen.empty?
puts "ok pattern monitor"

[node, monitor, client].each(&:kill)
puts "ok done"
