# Prints jobs serialized by Rails' own ActiveJob, one JSON line each: {"case", "body", "attributes"}.
# The body is what the Pub/Sub ActiveJob adapters publish (JSON.dump(job.serialize)); a job with a
# delay carries the adapter's `timestamp` attribute (epoch seconds), as activejob-google_cloud_pubsub does.
#   ruby tests/rails/serialize_jobs.rb QUEUE
require "active_job"
require "globalid"
require "json"
require "logger"

ActiveJob::Base.logger = Logger.new(nil)
GlobalID.app = "shop"
queue = ARGV.fetch(0)

class User
  include GlobalID::Identification
  attr_reader :id
  def initialize(id) = @id = id
  def self.find(id) = new(id)
end

class RailsKeywordJob < ActiveJob::Base
  def perform(sleep_duration:, raise_error:); end
end

class RailsPositionalJob < ActiveJob::Base
  def perform(count, label); end
end

class RailsTimeJob < ActiveJob::Base
  def perform(at, currency, within); end
end

class RailsFailingJob < ActiveJob::Base
  def perform(reason); end
end

class RailsGlobalIdJob < ActiveJob::Base
  def perform(user); end
end

def line(name, job, attributes = {})
  job.queue_name = ARGV.fetch(0)
  puts JSON.dump({ "case" => name, "body" => JSON.dump(job.serialize), "attributes" => attributes })
end

line("keywords", RailsKeywordJob.new(sleep_duration: 0.1, raise_error: false))
line("positional", RailsPositionalJob.new(7, "seven"))
line("time", RailsTimeJob.new(Time.utc(2026, 11, 22, 10, 0, 0), :eur, 3600.seconds))
scheduled = RailsPositionalJob.new(3, "later")
line("scheduled", scheduled, { "timestamp" => (Time.now.to_f + 3).to_s })
retried = RailsPositionalJob.new(2, "retried")
retried.executions = 2
retried.exception_executions = { "[StandardError]" => 2 }
line("retried", retried)
failing = RailsFailingJob.new("always")
failing.executions = 2
failing.exception_executions = { "[StandardError]" => 2 }
line("failing", failing)
line("globalid", RailsGlobalIdJob.new(User.new(1)))
