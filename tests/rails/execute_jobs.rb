# Pulls jobs a Rust service published with the ActiveJob wire from the emulator (its REST API:
# Ruby's standard library is enough) and runs each with ActiveJob::Base.execute, as a Rails
# worker on a Pub/Sub adapter does. Each job prints what its perform received, one JSON line.
#   ruby tests/rails/execute_jobs.rb HOST:PORT PROJECT SUBSCRIPTION COUNT
require "active_job"
require "base64"
require "json"
require "logger"
require "net/http"

ActiveJob::Base.logger = Logger.new(nil)
host, project, subscription, count = ARGV
count = Integer(count)

class RustToRailsKeywordJob < ActiveJob::Base
  def perform(invoice_id:, currency:, tags:)
    puts JSON.dump({ "class" => self.class.name, "job_id" => job_id, "queue" => queue_name,
                     "executions" => executions,
                     "kwargs" => { "invoice_id" => invoice_id, "currency" => currency, "tags" => tags } })
  end
end

class RustToRailsPositionalJob < ActiveJob::Base
  def perform(count, label)
    puts JSON.dump({ "class" => self.class.name, "job_id" => job_id, "args" => [count, label] })
  end
end

def post(host, path, body)
  res = Net::HTTP.post(URI("http://#{host}/v1/#{path}"), JSON.dump(body), "Content-Type" => "application/json")
  raise "#{path}: HTTP #{res.code} #{res.body}" unless res.is_a?(Net::HTTPSuccess)
  JSON.parse(res.body)
end

sub = "projects/#{project}/subscriptions/#{subscription}"
done = 0
deadline = Time.now + 30
while done < count && Time.now < deadline
  pulled = post(host, "#{sub}:pull", { "maxMessages" => 10, "returnImmediately" => true })
  (pulled["receivedMessages"] || []).each do |m|
    data = Base64.decode64(m["message"]["data"])
    ActiveJob::Base.execute(JSON.parse(data))
    post(host, "#{sub}:acknowledge", { "ackIds" => [m["ackId"]] })
    done += 1
  end
  sleep 0.2
end
abort "only #{done} of #{count} jobs arrived" if done < count
