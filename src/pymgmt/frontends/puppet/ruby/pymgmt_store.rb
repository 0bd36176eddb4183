# pymgmt's storeconfigs backend for Puppet: it records, it never stores.
#
# pymgmt compiles a manifest with `puppet catalog find --terminus compiler
# --storeconfigs --storeconfigs_backend pymgmt`, with this directory on
# RUBYLIB. Puppet then asks this backend, as it would ask PuppetDB, for
# what each exported collector (`File <<| ... |>>`) collects, and hands it
# the compiled catalog (exported resources included) to keep. pymgmt
# exchanges exported resources itself, live, through its etcd World: so
# every collector is answered with nothing, and what Puppet asked and
# exported is written, one JSON object a line, to the file named by
# PYMGMT_PUPPET_STORE for pymgmt to translate (into `collect:` entries and
# `@@` resources). Without that variable nothing is written.
#
# Puppet evaluates exported collectors after the manifest, when the
# manifest's file and line are gone from its stack; so the collector
# transformer is wrapped to leave the collect expression's location on
# each collector it makes. This file is loaded when Puppet looks up its
# catalog cache, before it compiles.

require 'json'
require 'set'
require 'puppet'

module PymgmtStore
  # Leaves [file, line] of the collect expression on the collector it makes.
  module WhereCollected
    def transform(o, scope)
      collector = super
      collector.instance_variable_set(:@pymgmt_where, [o.file, o.line])
      collector
    end
  end

  # What the three termini share: nothing is ever kept, so nothing is found.
  module KeepsNothing
    def find(_request)
      nil
    end

    def save(_request)
      nil
    end
  end

  @recorded = Set.new

  def self.record(what, data)
    path = ENV['PYMGMT_PUPPET_STORE']
    return if path.nil? || path.empty?
    File.open(path, 'a') { |f| f.puts(JSON.generate({ what => data })) }
  end

  # Records each exported collector of the compilation once.
  def self.collectors(scope)
    return if scope.nil?
    scope.compiler.collections.each do |c|
      next unless c.is_a?(Puppet::Pops::Evaluator::Collectors::ExportedCollector)
      next if @recorded.include?(c.object_id)
      @recorded << c.object_id
      file, line = c.instance_variable_get(:@pymgmt_where)
      overrides = c.overrides
      if file.nil? && overrides
        file, line = overrides[:file], overrides[:line]
      end
      record('collector',
             'type' => c.instance_variable_get(:@type).to_s,
             'query' => c.instance_variable_get(:@equery),
             'overrides' => !overrides.nil?,
             'file' => file, 'line' => line)
    end
  end

  # Records each exported resource of the compiled catalog, with its
  # parameters as the catalog's JSON gives them: one its own node does not
  # collect is left out of that JSON, yet is to be published for others.
  def self.exports(catalog)
    catalog.resources.each do |r|
      next unless r.exported?
      params = r.to_data_hash['parameters'] || {}
      record('export', 'type' => r.type.to_s, 'title' => r.title.to_s,
                       'params' => params, 'file' => r.file, 'line' => r.line)
    end
  end
end

Puppet::Pops::Evaluator::CollectorTransformer.prepend(PymgmtStore::WhereCollected)
