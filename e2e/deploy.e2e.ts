import { describeDeploys } from './deploy-scenarios.js';

// One host, Docker Compose: lmsctl replaces the containers one at a time behind Caddy.
describeDeploys('compose');
