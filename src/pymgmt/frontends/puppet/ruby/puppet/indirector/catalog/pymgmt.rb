# The compiled catalog is handed here to keep (the storeconfigs cache):
# its exported resources are recorded for pymgmt (see pymgmt_store.rb).
# No catalog is ever kept or returned.
require 'puppet/indirector/code'
require 'pymgmt_store'

class Puppet::Resource::Catalog::Pymgmt < Puppet::Indirector::Code
  include PymgmtStore::KeepsNothing
  desc 'pymgmt: records the exported resources of a compiled catalog.'

  def save(request)
    PymgmtStore.exports(request.instance)
    nil
  end
end
