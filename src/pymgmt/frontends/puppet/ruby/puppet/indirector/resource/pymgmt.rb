# Exported collectors ask this terminus for other nodes' exports (see
# pymgmt_store.rb): recorded for pymgmt, answered with nothing.
require 'puppet/indirector/code'
require 'pymgmt_store'

class Puppet::Resource::Pymgmt < Puppet::Indirector::Code
  include PymgmtStore::KeepsNothing
  desc 'pymgmt: records exported collectors; pymgmt collects through its own World.'

  def search(request)
    PymgmtStore.collectors(request.options[:scope])
    []
  end
end
