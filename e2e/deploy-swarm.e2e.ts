import { describeDeploys } from './deploy-scenarios.js';

// A single-node Swarm (made here when the engine is none, and left again): the engine rolls the
// services, lmsctl adds the preflight, migrations, watch window and history.
describeDeploys('swarm');
